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


class LeaseTable:
    """Current leases by task id, with an expiry heap (stale heap entries are skipped)."""

    def __init__(self) -> None:
        self._by_task: dict[str, Lease] = {}
        self._heap: list[tuple[float, int, str]] = []

    def __len__(self) -> int:
        return len(self._by_task)

    def add(self, lease: Lease) -> None:
        self._by_task[lease.task_id] = lease
        heapq.heappush(self._heap, (lease.expires, lease.token, lease.task_id))

    def get(self, task_id: str) -> Lease | None:
        return self._by_task.get(task_id)

    def pop(self, task_id: str) -> Lease | None:
        return self._by_task.pop(task_id, None)

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
