"""What the client hands back: plain dataclasses built from the broker's replies."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ajq.protocol import FINAL_STATES, decode_value


def _when(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, tz=UTC) if ts is not None else None


@dataclass(frozen=True)
class Submitted:
    """A task the broker has committed to disk."""

    id: str
    type: str
    queue: str


@dataclass(frozen=True)
class TaskInfo:
    id: str
    queue: str
    type: str
    state: str
    tries: int
    payload: Any
    result: Any
    last_error: str | None
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    deadline: datetime | None
    worker: str | None
    run_at: datetime | None = None
    depends_on: list[str] = field(default_factory=list)
    seq: int = 0  # submission order; pass as `before` to page through Client.tasks()
    owner: str | None = None  # the public key that submitted it, when the broker admits CURVE keys

    @property
    def done(self) -> bool:
        return self.state in FINAL_STATES

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> TaskInfo:
        return cls(
            id=d["id"],
            queue=d["queue"],
            type=d["type"],
            state=d["state"],
            tries=d["tries"],
            payload=decode_value(d["payload"]),
            result=decode_value(d["result"]) if d["result"] is not None else None,
            last_error=d["last_error"],
            created_at=_when(d["created_at"]),
            started_at=_when(d["started_at"]),
            finished_at=_when(d["finished_at"]),
            deadline=_when(d["deadline"]),
            worker=d["worker"],
            run_at=_when(d["ready_at"]) if d["state"] == "scheduled" else None,
            depends_on=list(d.get("depends_on", [])),
            seq=d.get("seq", 0),
            owner=d.get("owner"),
        )


@dataclass(frozen=True)
class WorkerInfo:
    """A live worker as the broker sees it."""

    worker_id: str
    host: str
    pid: int
    procs: int
    queues: list[str]
    weights: list[int]
    strict: bool
    running: list[str]
    since: datetime | None
    paused: bool

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> WorkerInfo:
        return cls(**{**d, "since": _when(d["since"])})


@dataclass(frozen=True)
class QueueInfo:
    name: str
    max_concurrent: int
    max_run_time_s: float
    max_tries: int  # -1: unlimited
    paused: bool
    workers: int
    created_at: datetime | None = None
    retention_s: float = 0.0
    dead_max: int = 0
    dead_retention_s: float = 0.0
    backoff_s: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> QueueInfo:
        return cls(
            name=d["name"],
            max_concurrent=d["max_concurrent"],
            max_run_time_s=d["max_run_time_s"],
            max_tries=d["max_tries"],
            paused=d["paused"],
            workers=d["workers"],
            created_at=_when(d["created_at"]),
            retention_s=d["retention_s"],
            dead_max=d["dead_max"],
            dead_retention_s=d["dead_retention_s"],
            backoff_s=d.get("backoff_s", 0.0),
            counts=dict(d["counts"]),
        )


@dataclass(frozen=True)
class CronInfo:
    """A periodic task: the broker submits `type` on every match of `cron` (UTC)."""

    name: str
    cron: str
    type: str
    payload: Any
    queue: str
    next_run: datetime | None
    last_run: datetime | None
    last_task: str | None
    created_at: datetime | None

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> CronInfo:
        return cls(
            name=d["name"],
            cron=d["cron"],
            type=d["type"],
            payload=decode_value(d["payload"]),
            queue=d["queue"],
            next_run=_when(d["next_run"]),
            last_run=_when(d["last_run"]),
            last_task=d["last_task"],
            created_at=_when(d["created_at"]),
        )
