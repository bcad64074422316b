"""How many CPUs this process may use: affinity and the cgroup CPU quota, not os.cpu_count()."""

from __future__ import annotations

import math
import os
from pathlib import Path


def available_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_quota(cgroup_root)
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def cgroup_quota(root: Path) -> float | None:
    """The CPU quota in CPUs (cgroup v2 cpu.max, or v1 cfs quota/period); None when unlimited."""
    try:
        v2 = root / _own_cgroup_v2() / "cpu.max"
        if v2.exists():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        q1, p1 = root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us"
        if q1.exists() and p1.exists():
            quota_us = int(q1.read_text())
            return None if quota_us <= 0 else quota_us / int(p1.read_text())
    except (OSError, ValueError):
        return None
    return None


def _own_cgroup_v2() -> str:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return line[3:].lstrip("/")
    except OSError:
        pass
    return ""
