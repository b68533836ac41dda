"""How many cores this process may use: the default for worker processes and model calls."""

import math
import os

# Worker processes a run may ask for. Each reserves four slots' worth of shared
# mapping for the paths it is sent (batch/workers.py: 1 MiB each, touched only as used):
# --workers 99999 asked for 100 GiB at once and failed with "Cannot allocate memory".
MAX_WORKERS = 256


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (taskset, a container's
    cpuset), capped by a cgroup CPU quota (docker --cpus, Kubernetes limits), which
    caps time rather than cores and so is not seen in the affinity."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def _cgroup_quota(own: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> float | None:
    """CPUs' worth of time this process's cgroups allow, the tightest of its own cgroup and
    each above it (cgroup v2 cpu.max; v1 cpu.cfs_quota_us / cpu.cfs_period_us in the cpu
    hierarchy); None: no cap. The own cgroup is read from `own` (/proc/self/cgroup): a
    quota set on it, not on the root, is the usual one outside a container."""
    try:
        with open(own) as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    quotas = []
    for line in lines or ["0::/"]:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":  # v2
            quotas += _each_level(root, path, lambda d: _v2(os.path.join(d, "cpu.max")))
        elif "cpu" in controllers.split(","):
            for folder in (controllers, "cpu", "cpu,cpuacct"):
                if os.path.isdir(os.path.join(root, folder)):
                    quotas += _each_level(os.path.join(root, folder), path, _v1)
                    break
    return min(quotas) if quotas else None


def _each_level(root: str, path: str, read) -> list[float]:
    """read(folder) for the cgroup at `path` under `root` and each cgroup above it: the quotas set."""
    parts = [p for p in path.split("/") if p and p not in (".", "..")]
    found = (read(os.path.join(root, *parts[:n])) for n in range(len(parts), -1, -1))
    return [q for q in found if q]


def _v2(file: str) -> float | None:
    try:
        with open(file) as f:
            quota, period = f.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _v1(folder: str) -> float | None:
    try:
        with open(os.path.join(folder, "cpu.cfs_quota_us")) as f:
            quota = int(f.read())
        with open(os.path.join(folder, "cpu.cfs_period_us")) as f:
            period = int(f.read())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None
