"""Workers known to the broker: what they serve, their free slots (credit), when last heard.

Who is registered, who departed and the credit spent on deliveries follow the database's fate:
each change is journaled and undone with a rolled-back step (a worker dropped in a step that
failed is still there after it). What a worker told us itself (credit it granted, a pause, the
time it was last heard) stands whatever the step's fate: it happened, and the worker is not
told to send it again. A worker's running tasks are the lease table's (`LeaseTable.held_by`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from ajq.broker.journal import Journal


@dataclass(slots=True)
class WorkerState:
    ident: bytes  # routing id, the worker id in bytes
    worker_id: str
    host: str
    pid: int
    procs: int
    queues: list[str]
    weights: dict[str, int]  # queue -> weight, in the worker's order of priority
    strict: bool  # serve a queue only when every earlier one has nothing ready
    since: float  # wall time of HELLO
    last_seen: float  # monotonic
    credit: int = 0
    paused: bool = False
    current: dict[str, int] = field(default_factory=dict)  # smooth weighted round-robin state


@dataclass(frozen=True, slots=True)
class Departed:
    """A worker the broker can no longer reach: its tasks go back at `at` (monotonic) unless it
    registers again first, since its children may still run them until then (SPEC 6.1)."""

    why: str
    at: float


class Registry:
    """Live workers by routing id; a worker silent for `lost_after_s` is dropped by `lost()`, and one
    whose connection is gone waits in `departed` until its tasks may go back."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._workers: dict[bytes, WorkerState] = {}
        self._departed: dict[bytes, Departed] = {}

    def __iter__(self) -> Iterator[WorkerState]:
        return iter(list(self._workers.values()))

    def __len__(self) -> int:
        return len(self._workers)

    def get(self, ident: bytes) -> WorkerState | None:
        return self._workers.get(ident)

    def with_credit(self) -> list[WorkerState]:
        return [w for w in self._workers.values() if w.credit > 0 and not w.paused]

    def least_recently_seen(self) -> float | None:
        """The oldest `last_seen` of the live workers (monotonic), if any."""
        return min((w.last_seen for w in self._workers.values()), default=None)

    def next_departure(self) -> float | None:
        return min((d.at for d in self._departed.values()), default=None)

    # -- changing (journaled) --------------------------------------------------------------------

    def add(self, worker: WorkerState) -> None:
        """A worker registered (again): it replaces what was known of it, departed or not."""
        self._remember(worker.ident)
        self._workers[worker.ident] = worker
        self._departed.pop(worker.ident, None)

    def remove(self, ident: bytes) -> WorkerState | None:
        self._remember(ident)
        return self._workers.pop(ident, None)

    def depart(self, ident: bytes, why: str, silent_after_s: float) -> WorkerState | None:
        """Forget a worker we cannot reach; its tasks wait until `silent_after_s` past its last message."""
        self._remember(ident)
        worker = self._workers.pop(ident, None)
        if worker is not None:
            self._departed[ident] = Departed(why, worker.last_seen + silent_after_s)
        return worker

    def departed_due(self, now_mono: float) -> list[tuple[bytes, str]]:
        """Departed workers whose tasks may go back now, forgotten here: (routing id, why) each."""
        due = [(ident, d.why) for ident, d in self._departed.items() if d.at <= now_mono]
        for ident, _ in due:
            self._remember(ident)
            del self._departed[ident]
        return due

    def lost(self, now_mono: float, lost_after_s: float) -> list[WorkerState]:
        gone = [w for w in self._workers.values() if now_mono - w.last_seen > lost_after_s]
        for worker in gone:
            self._remember(worker.ident)
            del self._workers[worker.ident]
        return gone

    def spend(self, worker: WorkerState, n: int = 1) -> None:
        """`n` of the worker's credit went to deliveries made in this step."""
        worker.credit -= n
        self._journal.record(self._refund, worker, n)

    # -- not journaled: the worker's own word ----------------------------------------------------

    @staticmethod
    def grant(worker: WorkerState, n: int, *, resume: bool) -> None:
        """The worker has `n` more free slots: a CREDIT (which also ends a PAUSE), or the credit
        that came with its RESULTS."""
        worker.credit += n
        if resume:
            worker.paused = False

    @staticmethod
    def pause(worker: WorkerState) -> None:
        """The worker takes no more tasks until it grants credit again (PAUSE)."""
        worker.credit = 0
        worker.paused = True

    def seen(self, ident: bytes, now_mono: float) -> WorkerState | None:
        worker = self._workers.get(ident)
        if worker is not None:
            worker.last_seen = now_mono
        return worker

    # -- internals -------------------------------------------------------------------------------

    def _remember(self, ident: bytes) -> None:
        """Journal what is known of `ident` now, to be put back if the step rolls back."""
        self._journal.record(self._restore, ident, self._workers.get(ident), self._departed.get(ident))

    def _restore(self, ident: bytes, worker: WorkerState | None, departed: Departed | None) -> None:
        if worker is None:
            self._workers.pop(ident, None)
        else:
            self._workers[ident] = worker
        if departed is None:
            self._departed.pop(ident, None)
        else:
            self._departed[ident] = departed

    @staticmethod
    def _refund(worker: WorkerState, n: int) -> None:
        worker.credit += n
