"""Lease extensions in flight: a handler's task.extend, sent to the broker as EXTEND, until answered.

The child's hard timeout moves at once (the worker never waits for the broker); the broker's answer
only matters when it grants less than asked (its queue's max_run_time is lower now), and then the
child's deadline is pulled in to match, so the task never runs on past its broker-side lease.
"""

from __future__ import annotations

import logging
from typing import Any

from ajq.protocol.clock import Now
from ajq.worker.lease_bound import LeaseBound
from ajq.worker.pool import Child, Extend

log = logging.getLogger("ajq.worker")

MEMORY = 1000  # unanswered EXTENDs remembered; beyond it, those older than FORGET_S are dropped
FORGET_S = 60.0


class Extensions:
    """EXTEND requests waiting for the broker's answer, by correlation id."""

    def __init__(self) -> None:
        self.waiting: dict[int, tuple[str, int, float]] = {}  # corr -> (task id, token, monotonic sent at)

    def request(self, child: Child, msg: Extend, corr: int, now: Now) -> dict[str, Any] | None:
        """Move the child's deadline to now + seconds (capped at max_run_time); the EXTEND body to send.

        None when the message comes late, from a try that is over.
        """
        item = child.task
        if item is None or item["token"] != msg.token:
            return None
        seconds = min(msg.seconds, float(item["run_time_s"]))
        child.deadline = now.mono + seconds
        item["deadline_wall"] = now.wall + seconds  # for a Task the supervisor builds for the error handler
        item["extended_s"] = seconds
        if len(self.waiting) >= MEMORY:
            self.waiting = {c: w for c, w in self.waiting.items() if now.mono - w[2] < FORGET_S}
        self.waiting[corr] = (item["id"], item["token"], now.mono)
        return {"id": item["id"], "token": item["token"], "seconds": seconds}

    def granted(self, corr: int, data: Any, busy: list[Child], bound: LeaseBound) -> None:
        """The broker's REPLY: the lease now surely holds for what it granted from when we asked
        (the fence moves); if it granted less than asked, the child is killed no later than that."""
        task_id, token, sent = self.waiting.pop(corr)
        granted = data.get("run_time_s") if isinstance(data, dict) else None
        if isinstance(granted, bool) or not isinstance(granted, int | float):
            return
        for child in busy:
            if child.task is not None and child.task["token"] == token and child.deadline is not None:
                child.deadline = min(child.deadline, sent + float(granted))
                child.fence = max(child.fence, bound.extended(sent, float(granted)))
        log.debug("task %s: lease extended by %gs", task_id, granted)

    def refused(self, corr: int, message: Any) -> bool:
        """An ERROR for an EXTEND (e.g. STALE_LEASE): log it; False if `corr` is not an EXTEND."""
        waiting = self.waiting.pop(corr, None)
        if waiting is None:
            return False
        log.warning("broker refused to extend the lease of task %s: %s", waiting[0], message)
        return True
