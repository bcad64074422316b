"""Flow control toward the broker: how many tasks to hold ready (prefetch) and how to batch outcomes."""

from __future__ import annotations

from typing import Any

from ajq.protocol.limits import MAX_PREFETCH_PER_PROC, Limits


def batches(items: list[dict[str, Any]], limits: Limits) -> list[list[dict[str, Any]]]:
    """Split outcomes (or leases) into messages within the broker's limits: at most `max_batch` items
    and about half its frame limit, so the envelope and the errors' encoding always fit."""
    out: list[list[dict[str, Any]]] = []
    size, budget = 0, limits.max_frame_bytes // 2
    for item in items:
        n = len(item.get("result") or b"") + len(item.get("error") or "") + 64
        if not out or len(out[-1]) >= limits.max_batch or size + n > budget:
            out.append([])
            size = 0
        out[-1].append(item)
        size += n
    return out


class Prefetch:
    """How many tasks to hold beyond those running: enough for ~BUFFER_S of work, from an average.

    Short tasks need a deep buffer to hide the broker's round trip (a commit); long ones need
    almost none, and a shallow buffer keeps their lease clock (it starts at delivery) honest.
    """

    BUFFER_S = 0.025
    MAX_PER_PROC = MAX_PREFETCH_PER_PROC  # the broker refuses credit beyond it

    def __init__(self, procs: int, fixed: int) -> None:
        self.procs = procs
        self.fixed = fixed  # -1: adaptive
        self.avg_s: float | None = None

    def observe(self, run_s: float) -> None:
        """Fold one task's run time into the moving average."""
        self.avg_s = run_s if self.avg_s is None else 0.9 * self.avg_s + 0.1 * run_s

    def depth(self) -> int:
        """Tasks to hold ready beyond one per process."""
        if self.fixed >= 0:
            return self.fixed
        if self.avg_s is None:
            return self.procs
        want = int(self.procs * self.BUFFER_S / max(self.avg_s, 1e-6)) + 1
        return min(self.MAX_PER_PROC * self.procs, want)
