"""Delivered tasks that no child runs yet (the prefetch, SPEC 7), in delivery order, each held with
its stop times (lease_bound.py). The supervisor adds a delivery, starts the tasks on idle children,
drops one the broker cancelled or gave back, and hands them all back when it pauses or stops.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

from ajq.protocol.clock import Now
from ajq.worker.lease_bound import Held, LeaseBound

Items = list[dict[str, Any]]


class Buffer:
    """The held deliveries, oldest first."""

    def __init__(self, bound: LeaseBound) -> None:
        self.bound = bound
        self._held: deque[Held] = deque()

    def __len__(self) -> int:
        return len(self._held)

    def __iter__(self) -> Iterator[Held]:
        return iter(self._held)

    def add(self, tasks: Items, now: Now) -> None:
        """A DELIVER read at `now`: each task's deadline (and the one its handler sees) counts from now."""
        for item in tasks:
            item["deadline_wall"] = now.wall + item["run_time_s"]
            self._held.append(self.bound.hold(item, now.mono))

    def next(self) -> Held:
        """The oldest, to start (the buffer must not be empty)."""
        return self._held.popleft()

    def cancel(self, task_id: str, token: Any) -> dict[str, Any] | None:
        """Drop the lease `token` of task `task_id` if held here; its delivery item, else None."""
        for held in self._held:
            if held.item["id"] == task_id and held.item["token"] == token:
                self._held.remove(held)
                return held.item
        return None

    def keep_only(self, running: set[str]) -> int:
        """Drop the tasks whose ids are not in `running` (the broker gave them back); how many."""
        lost = [h for h in self._held if h.item["id"] not in running]
        for held in lost:
            self._held.remove(held)
        return len(lost)

    def hand_back(self) -> Items:
        """Empty the buffer; the leases to RELEASE (they used no try)."""
        leases = [{"id": h.item["id"], "token": h.item["token"]} for h in self._held]
        self._held.clear()
        return leases
