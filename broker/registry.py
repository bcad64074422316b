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


class Registry:
    """Live workers by routing id; a worker silent for `lost_after_s` is dropped by `lost()`."""

    def __init__(self) -> None:
        self._workers: dict[bytes, WorkerState] = {}

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(self._workers.values()))

    def __len__(self) -> int:
        return len(self._workers)

    def get(self, ident: bytes) -> WorkerState | None:
        return self._workers.get(ident)

    def add(self, worker: WorkerState) -> None:
        self._workers[worker.ident] = worker

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
