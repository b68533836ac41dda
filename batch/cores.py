"""How many cores this process may use: the default for worker processes and model calls."""

import math
import os
from pathlib import Path

# Worker processes a run may ask for. Each reserves four slots' worth of shared
# mapping for the paths it is sent (batch/workers.py: 1 MiB each, touched only as used):
# --workers 99999 asked for 100 GiB at once and failed with "Cannot allocate memory".
MAX_WORKERS = 256


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (taskset, a container's cpuset), capped by a
    cgroup CPU quota (docker --cpus, Kubernetes limits), which caps time, not cores, unseen in the affinity."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def _cgroup_quota(own: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> float | None:
    """CPUs' worth of time this process's cgroups allow, the tightest of its own cgroup (read from
    `own`: a quota on it, not on the root, is the usual one outside a container) and each above it,
    under cgroup v2 or v1's cpu hierarchy; None: no cap."""
    try:
        lines = Path(own).read_text().splitlines()
    except OSError:
        lines = []
    quotas = []
    for line in lines or ["0::/"]:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        parts = [p for p in path.split("/") if p and p not in (".", "..")]
        if controllers == "":  # v2
            quotas += [_quota(os.path.join(root, *parts[:n]), True) for n in range(len(parts) + 1)]
        elif "cpu" in controllers.split(","):
            for folder in (controllers, "cpu", "cpu,cpuacct"):
                if os.path.isdir(os.path.join(root, folder)):
                    quotas += [_quota(os.path.join(root, folder, *parts[:n]), False) for n in range(len(parts) + 1)]
                    break
    quotas = [q for q in quotas if q]
    return min(quotas) if quotas else None


def _quota(folder: str, v2: bool) -> float | None:
    """CPUs' worth of time the cgroup at `folder` allows (v2: cpu.max; v1: cpu.cfs_quota_us over
    cpu.cfs_period_us); None: no cap, or none to read."""
    try:
        if v2:
            quota, period = Path(folder, "cpu.max").read_text().split()[:2]
        else:
            quota, period = (Path(folder, name).read_text() for name in ("cpu.cfs_quota_us", "cpu.cfs_period_us"))
        quota, period = int(quota), int(period)  # v2's "max", no cap: ValueError
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None
