"""What the store hands back: plain frozen rows."""

from __future__ import annotations

from dataclasses import dataclass

from ajq.protocol.states import TaskState


@dataclass(frozen=True, slots=True)
class QueueRow:
    name: str
    max_concurrent: int
    max_run_time_s: float
    max_tries: int  # -1: unlimited
    paused: bool
    created_at: float
    retention_s: float  # complete, terminated, expired, unreachable tasks are kept this long
    dead_max: int  # dead tasks kept at most
    dead_retention_s: float
    backoff_s: float = 1.0  # before a try that ended without an answer runs again; doubles per try


@dataclass(frozen=True, slots=True)
class TaskRow:
    id: str
    queue: str
    type: str
    payload: bytes
    state: str
    tries: int
    created_at: float
    ready_at: float
    deadline: float | None
    token: int | None
    lease_expires: float | None
    worker: str | None
    started_at: float | None
    finished_at: float | None
    result: bytes | None
    last_error: str | None
    unique_key: str | None
    parents: bytes | None  # msgpack list of task ids
    load_results: int
    seq: int
    owner: str | None  # the key that submitted it (z85), with CURVE keys


@dataclass(frozen=True, slots=True)
class NewTask:
    """A task as SUBMIT or a schedule makes it."""

    id: str
    type: str
    payload: bytes
    state: str = TaskState.NEW
    ready_at: float = 0.0
    deadline: float | None = None
    unique_key: str | None = None
    parents: bytes | None = None
    load_results: bool = False
    finished_at: float | None = None
    last_error: str | None = None
    signature: bytes | None = None
    owner: str | None = None


@dataclass(frozen=True, slots=True)
class ReadyTask:
    """What dispatch needs of a waiting task to lease it."""

    seq: int
    id: str
    type: str
    payload: bytes
    tries: int
    deadline: float | None
    state: str
    unique_key: str | None
    parents: bytes | None
    load_results: int
    signature: bytes | None


@dataclass(frozen=True, slots=True)
class ActiveTask:
    id: str
    queue: str
    type: str
    token: int
    tries: int
    lease_expires: float
    worker: str | None
    unique_key: str | None


@dataclass(frozen=True, slots=True)
class TaskBrief:
    id: str
    queue: str
    type: str
    state: str
    tries: int
    unique_key: str | None


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    name: str
    cron: str
    type: str
    payload: bytes
    queue: str
    next_run: float
    last_run: float | None
    last_task: str | None
    created_at: float
