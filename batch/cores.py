"""How many cores this process may use: the default for worker processes and model calls."""

import math
import os


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (taskset, a container's
    cpuset), capped by a cgroup CPU quota (docker --cpus, Kubernetes limits), which
    caps time rather than cores and so is not seen in the affinity."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def _cgroup_quota() -> float | None:
    """CPUs' worth of time the cgroup allows (cgroup v2 cpu.max, else v1 cfs quota); None: no cap."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
            quota = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
            period = int(f.read())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None
