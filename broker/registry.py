"""Workers known to the broker: what they serve, their free slots (credit), when last heard."""

from __future__ import annotations

from dataclasses import dataclass, field


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
    running: set[str] = field(default_factory=set)
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

    def __init__(self) -> None:
        self._workers: dict[bytes, WorkerState] = {}
        self._departed: dict[bytes, Departed] = {}

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(self._workers.values()))

    def __len__(self) -> int:
        return len(self._workers)

    def get(self, ident: bytes) -> WorkerState | None:
        return self._workers.get(ident)

    def add(self, worker: WorkerState) -> None:
        self._workers[worker.ident] = worker
        self._departed.pop(worker.ident, None)

    def depart(self, ident: bytes, why: str, silent_after_s: float) -> WorkerState | None:
        """Forget a worker we cannot reach; its tasks wait until `silent_after_s` past its last message."""
        worker = self._workers.pop(ident, None)
        if worker is not None:
            self._departed[ident] = Departed(why, worker.last_seen + silent_after_s)
        return worker

    def departed_due(self, now_mono: float) -> list[tuple[bytes, str]]:
        """Departed workers whose tasks may go back now, forgotten here: (routing id, why) each."""
        due = [(ident, d.why) for ident, d in self._departed.items() if d.at <= now_mono]
        for ident, _ in due:
            del self._departed[ident]
        return due

    def next_departure(self) -> float | None:
        return min((d.at for d in self._departed.values()), default=None)

    def remove(self, ident: bytes) -> WorkerState | None:
        return self._workers.pop(ident, None)

    def seen(self, ident: bytes, now_mono: float) -> WorkerState | None:
        worker = self._workers.get(ident)
        if worker is not None:
            worker.last_seen = now_mono
        return worker

    def lost(self, now_mono: float, lost_after_s: float) -> list[WorkerState]:
        gone = [w for w in self._workers.values() if now_mono - w.last_seen > lost_after_s]
        for worker in gone:
            del self._workers[worker.ident]
        return gone

    def with_credit(self) -> list[WorkerState]:
        return [w for w in self._workers.values() if w.credit > 0 and not w.paused]
