"""Leases: which worker holds which task, under which token, until when (monotonic time)."""

from __future__ import annotations

import heapq
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Lease:
    """One delivery of a task. Any answer must carry `token`; an old token is refused."""

    task_id: str
    queue: str
    type: str
    token: int
    tries: int
    expires: float  # monotonic
    worker: bytes  # the worker's routing id
    unique_key: str | None = None


SLACK = 1024  # stale heap entries allowed beyond one per live lease before the heap is rebuilt


class LeaseTable:
    """Current leases by task id, with an expiry heap.

    A lease that ends (or is extended) leaves a stale entry in the heap, skipped when it comes up.
    So that memory follows the leases held, not the leases ever made (one long lease would keep
    every later entry), the heap is rebuilt from the live leases whenever the stale entries
    outnumber them by SLACK: heapify in C, O(live) every O(live) operations, so O(1) amortised,
    and cheaper per operation than an indexed heap written in Python.
    """

    def __init__(self) -> None:
        self._by_task: dict[str, Lease] = {}
        self._heap: list[tuple[float, int, str]] = []

    def __len__(self) -> int:
        return len(self._by_task)

    def heap_size(self) -> int:
        """Entries in the expiry heap, stale ones included (bounded by 2 x live + SLACK)."""
        return len(self._heap)

    def add(self, lease: Lease) -> None:
        self._by_task[lease.task_id] = lease
        heapq.heappush(self._heap, (lease.expires, lease.token, lease.task_id))
        self._compact_if_stale()

    def get(self, task_id: str) -> Lease | None:
        return self._by_task.get(task_id)

    def pop(self, task_id: str) -> Lease | None:
        lease = self._by_task.pop(task_id, None)
        self._compact_if_stale()
        return lease

    def _compact_if_stale(self) -> None:
        live = len(self._by_task)
        if len(self._heap) > 2 * live + SLACK:
            self._heap = [(lease.expires, lease.token, lease.task_id) for lease in self._by_task.values()]
            heapq.heapify(self._heap)

    def due(self, now_mono: float) -> list[Lease]:
        """Remove and return every lease that has expired by `now_mono`."""
        expired: list[Lease] = []
        heap = self._heap
        while heap and heap[0][0] <= now_mono:
            _, token, task_id = heapq.heappop(heap)
            lease = self._by_task.get(task_id)
            if lease is not None and lease.token == token and lease.expires <= now_mono:  # not extended since
                del self._by_task[task_id]
                expired.append(lease)
        return expired

    def next_expiry(self) -> float | None:
        heap = self._heap
        while heap:
            expires, token, task_id = heap[0]
            lease = self._by_task.get(task_id)
            if lease is not None and lease.token == token and lease.expires == expires:
                return expires
            heapq.heappop(heap)
        return None

    def of_worker(self, worker: bytes) -> list[Lease]:
        return [lease for lease in self._by_task.values() if lease.worker == worker]

    def clear(self) -> None:
        self._by_task.clear()
        self._heap.clear()
