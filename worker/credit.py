"""Flow control toward the broker: how many tasks to hold ready (prefetch) and how to batch outcomes."""

from __future__ import annotations

from typing import Any

from ajq.protocol.limits import MAX_BATCH, MAX_FRAME_BYTES, MAX_PREFETCH_PER_PROC

BATCH_BYTES = MAX_FRAME_BYTES // 2  # outcomes per RESULTS message, by size


def batches(items: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Split outcomes into messages of at most MAX_BATCH items and about BATCH_BYTES."""
    out: list[list[dict[str, Any]]] = []
    size = 0
    for item in items:
        n = len(item.get("result") or b"") + len(item.get("error") or "") + 64
        if not out or len(out[-1]) >= MAX_BATCH or size + n > BATCH_BYTES:
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
