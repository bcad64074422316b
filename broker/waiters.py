"""WAIT requests parked until their task ends or their time runs out."""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from ajq.broker.journal import Journal


@dataclass(slots=True, eq=False)  # compared by identity: two WAITs alike are still two
class Waiter:
    ident: bytes
    corr: int
    expires: float  # monotonic


SLACK = 1024  # stale heap entries allowed beyond one per live waiter before the heap is rebuilt


class Waiters:
    """Parked WAITs by task, with an expiry heap rebuilt when answered waiters' stale entries
    outnumber the live ones (as in leases.py), so memory follows the waits parked now.

    Only parking is journaled: a WAIT of a step that rolls back was answered INTERNAL, so it waits
    no more. A waiter answered (its task ended, its time ran out) stays answered whatever happens."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._by_task: dict[str, list[Waiter]] = {}
        self._heap: list[tuple[float, str]] = []
        self._live = 0

    def add(self, task_id: str, ident: bytes, corr: int, expires: float) -> None:
        waiter = Waiter(ident, corr, expires)
        self._by_task.setdefault(task_id, []).append(waiter)
        heapq.heappush(self._heap, (expires, task_id))
        self._live += 1
        self._journal.record(self._unpark, task_id, waiter)
        if len(self._heap) > 2 * self._live + SLACK:
            self._heap = [(w.expires, t) for t, ws in self._by_task.items() for w in ws]
            heapq.heapify(self._heap)

    def __len__(self) -> int:
        return self._live

    def heap_size(self) -> int:
        """Entries in the expiry heap, stale ones included (bounded by 2 x live + SLACK)."""
        return len(self._heap)

    def _unpark(self, task_id: str, waiter: Waiter) -> None:
        waiters = self._by_task.get(task_id, [])
        if waiter in waiters:
            waiters.remove(waiter)
            self._live -= 1
        if not waiters:
            self._by_task.pop(task_id, None)

    def pop(self, task_id: str) -> list[Waiter]:
        waiters = self._by_task.pop(task_id, [])
        self._live -= len(waiters)
        return waiters

    def expired(self, now_mono: float) -> list[tuple[str, Waiter]]:
        """Remove and return the waiters whose time ran out."""
        out: list[tuple[str, Waiter]] = []
        while self._heap and self._heap[0][0] <= now_mono:
            _, task_id = heapq.heappop(self._heap)
            waiters = self._by_task.get(task_id)
            if not waiters:
                continue
            keep = [w for w in waiters if w.expires > now_mono]
            out += [(task_id, w) for w in waiters if w.expires <= now_mono]
            self._live -= len(waiters) - len(keep)
            if keep:
                self._by_task[task_id] = keep
            else:
                del self._by_task[task_id]
        return out

    def next_expiry(self) -> float | None:
        return self._heap[0][0] if self._heap else None
