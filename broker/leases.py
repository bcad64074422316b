"""Leases: which worker holds which task, under which token, until when (monotonic time).

The table owns every fact about a lease: the worker that holds it (so a worker's running tasks are
the table's, never a second copy), its expiry, and whether a cancel was acknowledged for it. A lease
that ends leaves at once; every change is journaled, so a rolled-back step restores the table.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass

from ajq.broker.journal import Journal


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
_NONE: frozenset[str] = frozenset()


class LeaseTable:
    """Current leases by task id and by worker, with an expiry heap and the cancels acknowledged.

    A lease that ends (or is extended) leaves a stale entry in the heap, skipped when it comes up.
    So that memory follows the leases held, not the leases ever made (one long lease would keep
    every later entry), the heap is rebuilt from the live leases whenever the stale entries
    outnumber them by SLACK: heapify in C, O(live) every O(live) operations, so O(1) amortised,
    and cheaper per operation than an indexed heap written in Python.
    """

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._record = journal.append
        self._by_task: dict[str, Lease] = {}
        self._by_worker: dict[bytes, set[str]] = {}
        self._cancelled: set[str] = set()  # leases whose task has an acknowledged cancel (table `cancels`)
        self._heap: list[tuple[float, int, str]] = []

    def __len__(self) -> int:
        return len(self._by_task)

    def heap_size(self) -> int:
        """Entries in the expiry heap, stale ones included (bounded by 2 x live + SLACK)."""
        return len(self._heap)

    def load(self, leases: Iterable[Lease], cancels: Iterable[str]) -> None:
        """Every lease the database holds, at start (not journaled)."""
        for lease in leases:
            self._put(lease)
        self._cancelled = {task_id for task_id in cancels if task_id in self._by_task}

    # -- reading ---------------------------------------------------------------------------------

    def get(self, task_id: str) -> Lease | None:
        return self._by_task.get(task_id)

    def held_by(self, worker: bytes) -> frozenset[str] | set[str]:
        """The ids of the tasks `worker` holds (read only)."""
        return self._by_worker.get(worker, _NONE)

    def of_worker(self, worker: bytes) -> list[Lease]:
        by_task = self._by_task
        return [by_task[task_id] for task_id in self._by_worker.get(worker, ())]

    def cancelled(self, task_id: str) -> bool:
        """A cancel of this leased task was acknowledged: its worker is told to kill it."""
        return task_id in self._cancelled

    def due(self, now_mono: float) -> list[Lease]:
        """The leases that have expired by `now_mono`. They stay until the caller ends each one (a
        rollback puts their heap entries back, so one not ended yet still expires)."""
        expired: dict[str, Lease] = {}  # a lease put back by a rollback can have two equal entries
        heap = self._heap
        while heap and heap[0][0] <= now_mono:
            entry = heapq.heappop(heap)
            lease = self._by_task.get(entry[2])
            if lease is not None and lease.token == entry[1] and lease.expires <= now_mono:  # not extended since
                expired[lease.task_id] = lease
                self._record((self._repush, entry))
        return list(expired.values())

    def next_expiry(self) -> float | None:
        heap = self._heap
        while heap:
            expires, token, task_id = heap[0]
            lease = self._by_task.get(task_id)
            if lease is not None and lease.token == token and lease.expires == expires:
                return expires
            heapq.heappop(heap)
        return None

    # -- changing (journaled) --------------------------------------------------------------------

    def add(self, lease: Lease) -> None:
        """A new lease, or a lease extended (the same task and token, a later expiry)."""
        old = self._by_task.get(lease.task_id)
        if old is not None:
            self._unput(old)
        self._put(lease)
        self._record((self._undo_add, lease, old))

    def pop(self, task_id: str) -> bool:
        """The lease ends (its task finished, failed or went back): it and its cancel leave. True if
        a cancel was acknowledged for it (its row in `cancels` goes too)."""
        lease = self._by_task.get(task_id)
        if lease is None:
            return False
        cancelled = task_id in self._cancelled
        if cancelled:
            self._cancelled.discard(task_id)
        self._unput(lease)
        self._record((self._undo_pop, lease, cancelled))
        return cancelled

    def cancel(self, task_id: str) -> None:
        """A cancel of the leased task was acknowledged (and written)."""
        if task_id in self._by_task and task_id not in self._cancelled:
            self._cancelled.add(task_id)
            self._journal.record(self._cancelled.discard, task_id)

    # -- internals -------------------------------------------------------------------------------

    def _put(self, lease: Lease) -> None:
        self._by_task[lease.task_id] = lease
        held = self._by_worker.get(lease.worker)
        if held is None:
            held = self._by_worker[lease.worker] = set()
        held.add(lease.task_id)
        heapq.heappush(self._heap, (lease.expires, lease.token, lease.task_id))
        self._compact_if_stale()

    def _unput(self, lease: Lease) -> None:
        del self._by_task[lease.task_id]
        held = self._by_worker[lease.worker]
        held.discard(lease.task_id)
        if not held:
            del self._by_worker[lease.worker]
        self._compact_if_stale()

    def _undo_add(self, lease: Lease, old: Lease | None) -> None:
        self._unput(lease)
        if old is not None:
            self._put(old)

    def _undo_pop(self, lease: Lease, cancelled: bool) -> None:
        self._put(lease)
        if cancelled:
            self._cancelled.add(lease.task_id)

    def _repush(self, entry: tuple[float, int, str]) -> None:
        heapq.heappush(self._heap, entry)

    def _compact_if_stale(self) -> None:
        """Checked as leases come and go, so the heap never holds more than 2 x live + SLACK entries."""
        live = len(self._by_task)
        if len(self._heap) > 2 * live + SLACK:
            self._heap = [(lease.expires, lease.token, lease.task_id) for lease in self._by_task.values()]
            heapq.heapify(self._heap)
