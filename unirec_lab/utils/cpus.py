"""How many CPU cores this process may really use, and the default torch thread count derived from it.

A training step of these models is hundreds of small ops; with intra-op threads on every core, each op waits for
its slowest thread, so one competing job on the same cores stalls every op (measured on 2 cores: a step went
20.7 ms -> 1,352 ms with 2 threads, 23.3 -> 38.5 ms with 1; ``scripts/bench_contention.py``). The default
therefore leaves half the usable cores free: ``max(1, usable // 2)``; ``num_threads=N`` overrides it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def _cgroup_quota() -> float | None:
    """CPU quota of this process's cgroup in cores (v2 ``cpu.max``, else v1 cfs), ``None`` when unlimited."""
    v2 = Path("/sys/fs/cgroup/cpu.max")
    try:
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        q, p = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
        if q.is_file() and p.is_file():
            quota_us, period_us = int(q.read_text()), int(p.read_text())
            return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None
    return None


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup quota (rounded up), at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def default_threads() -> int:
    """Torch intra-op threads when the config says ``num_threads: null``: half the usable cores, at least 1."""
    return max(1, usable_cores() // 2)
