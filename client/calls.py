"""Every request of the client API as a `Call`: what to send and how to read the reply.

Client and AsyncClient only move calls over their sockets, so the two cannot drift apart: each
of their methods builds its call here. Arguments are checked here too, once for both, so a bad one
raises InvalidArgument before anything is sent.
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from nacl.signing import SigningKey

from ajq.client.errors import InvalidArgument, RequestRefused
from ajq.client.models import CronInfo, QueueInfo, Submitted, TaskInfo, WorkerInfo
from ajq.protocol import ErrorCode, Kind, encode_value, options
from ajq.protocol.curve import ClientKeys, KeyFileError
from ajq.protocol.limits import HARD_LIMITS, Limits
from ajq.protocol.signing import SigningKeyError, load_signing_key, sign

WAIT_MARGIN_S = 5.0  # extra time for the broker's own answer to a WAIT that ran out

T = TypeVar("T")
TaskRef = str | Submitted | TaskInfo  # a task named by its id, or by what submit() or get() returned
Parents = TaskRef | Iterable[TaskRef] | None
When = datetime | timedelta | float  # seconds or a timedelta from now, or an aware datetime


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request: its kind and body, how to read the reply's data, and its own time limit if any."""

    kind: Kind
    body: dict[str, Any]
    read: Callable[[Any], T]
    timeout: float | None = None  # set by calls whose wait is part of the request (WAIT)


@dataclass(frozen=True)
class Options:
    """What submit() accepts beside type and payload, as the caller gave it."""

    task_id: str | None = None
    deadline: When | None = None  # not started by then: expired, never run
    run_at: datetime | float | None = None  # scheduled until then (an aware datetime or a Unix time)
    delay: When | None = None  # another way to say run_at: seconds or a timedelta from now
    unique_for: timedelta | float | None = None  # refuse the same type+payload in the queue meanwhile
    depends_on: Parents = None  # run once all of these completed
    load_results: bool = False  # hand the parents' results to the handler


OPTION_KEYS = frozenset(("deadline", "run_at", "delay", "unique_for", "depends_on", "load_results"))


# -- checks -----------------------------------------------------------------------------------


def timeout_s(name: str, value: float) -> float:
    """A time limit: finite seconds above 0."""
    if problem := options.seconds_problem(value):
        raise InvalidArgument(options.refusal(name, value, problem, "10"))
    return float(value)


def _aware(name: str, value: datetime) -> float:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidArgument(
            f"{name}={value!r} has no timezone: give an aware datetime, "
            f"e.g. {name}=datetime.now(timezone.utc) + timedelta(minutes=5)"
        )
    return value.timestamp()


def _seconds(name: str, value: timedelta | float, *, zero_ok: bool, example: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if problem := options.seconds_problem(seconds, zero_ok=zero_ok):
        raise InvalidArgument(options.refusal(name, value, f"{problem} or a timedelta", example))
    return float(seconds)


def _from_now(name: str, value: When, now: float, *, zero_ok: bool) -> float:
    """A wall time given as seconds or a timedelta from now, or as an aware datetime."""
    if isinstance(value, datetime):
        return _aware(name, value)
    return now + _seconds(name, value, zero_ok=zero_ok, example="300")


def _at(name: str, value: datetime | float) -> float:
    """A wall time given as an aware datetime or a Unix timestamp."""
    if isinstance(value, datetime):
        return _aware(name, value)
    if options.seconds_problem(value):
        raise InvalidArgument(options.refusal(name, value, "an aware datetime or a Unix time", "1767225600"))
    return float(value)


def parent_ids(depends_on: Parents) -> list[str]:
    """Task ids from None, one task, or any iterable of ids, Submitted or TaskInfo objects."""
    if depends_on is None:
        return []
    refs: Iterable[Any] = [depends_on] if isinstance(depends_on, str | Submitted | TaskInfo) else depends_on
    ids: list[str] = []
    for ref in refs:
        task_id = ref.id if isinstance(ref, Submitted | TaskInfo) else ref
        if not isinstance(task_id, str):
            raise InvalidArgument(
                f"depends_on holds {ref!r}: give task ids or what submit() returned, e.g. depends_on=[a, b.id]"
            )
        ids.append(task_id)
    return ids


# -- submits ----------------------------------------------------------------------------------


def task_item(task_type: str, payload: Any, opts: Options = Options()) -> dict[str, Any]:
    """One task of a SUBMIT body, every option checked and turned into wall times."""
    if not isinstance(task_type, str):
        raise InvalidArgument(f"task type must be a str, not {type(task_type).__name__}")
    try:
        blob = encode_value(payload)
    except TypeError as exc:
        raise InvalidArgument(f"payload of {task_type!r}: {exc}") from None
    if len(blob) > HARD_LIMITS.max_payload_bytes:  # the broker refuses less than this with TOO_LARGE, naming its limit
        raise InvalidArgument(
            f"payload of {task_type!r} is {len(blob)} bytes, over the most any broker takes "
            f"({HARD_LIMITS.max_payload_bytes}): store large data elsewhere and pass a reference"
        )
    item: dict[str, Any] = {"type": task_type, "payload": blob}
    if opts.task_id is not None:
        item["id"] = opts.task_id
    now = time.time()
    if opts.deadline is not None:
        item["deadline"] = _from_now("deadline", opts.deadline, now, zero_ok=False)
    if opts.run_at is not None and opts.delay is not None:
        raise InvalidArgument("give run_at or delay, not both")
    if opts.run_at is not None:
        item["run_at"] = _at("run_at", opts.run_at)
    if opts.delay is not None:
        item["run_at"] = _from_now("delay", opts.delay, now, zero_ok=True)
    if opts.unique_for is not None:
        item["unique_for_s"] = _seconds("unique_for", opts.unique_for, zero_ok=False, example="3600")
    parents = parent_ids(opts.depends_on)
    if parents:
        item["depends_on"] = parents
        item["load_results"] = bool(opts.load_results)
    return item


def submit(task_type: str, payload: Any, queue: str, opts: Options) -> Call[Submitted]:
    body = {"queue": queue, "tasks": [task_item(task_type, payload, opts)]}
    return Call(Kind.SUBMIT, body, lambda data: Submitted(data["ids"][0], task_type, queue))


def many_items(tasks: Iterable[Any]) -> Iterable[dict[str, Any]]:
    """submit_many accepts (type, payload) pairs, or dicts with type, payload, id and submit's options."""
    for t in tasks:
        if isinstance(t, dict):
            unknown = set(t) - OPTION_KEYS - {"type", "payload", "id"}
            if unknown or "type" not in t:
                what = f"unknown keys {sorted(unknown)}" if unknown else "no 'type'"
                raise InvalidArgument(
                    f"a task dict with {what}: give type, payload, id, {', '.join(sorted(OPTION_KEYS))}"
                )
            extra = {k: v for k, v in t.items() if k in OPTION_KEYS}
            yield task_item(t["type"], t.get("payload"), Options(task_id=t.get("id"), **extra))
        else:
            task_type, payload = t
            yield task_item(task_type, payload)


def checked_first(tasks: Iterable[Any]) -> Iterator[dict[str, Any]] | None:
    """submit_many's items with the first one built and checked already, so a bad one raises before the
    broker is asked anything (even its limits); None when there are no tasks."""
    items = iter(many_items(tasks))
    first = next(items, None)
    return None if first is None else itertools.chain([first], items)


def submit_batches(queue: str, items: Iterable[dict[str, Any]], limits: Limits) -> Iterable[Call[list[str]]]:
    """SUBMIT calls within the broker's `limits`: at most `max_batch` tasks and about half its frame
    limit each (the rest of the frame is room for the fields); each reads its ids."""
    batch: list[dict[str, Any]] = []
    size, budget = 0, limits.max_frame_bytes // 2
    for item in items:
        n = len(item["payload"]) + len(item["type"]) + 64
        if batch and (len(batch) >= limits.max_batch or size + n > budget):
            yield Call(Kind.SUBMIT, {"queue": queue, "tasks": batch}, _ids)
            batch, size = [], 0
        batch.append(item)
        size += n
    if batch:
        yield Call(Kind.SUBMIT, {"queue": queue, "tasks": batch}, _ids)


def _ids(data: Any) -> list[str]:
    return list(data["ids"])


class Learner(Protocol):
    """A client that keeps the limits its broker announced (None: not asked yet)."""

    limits: Limits | None


@contextlib.contextmanager
def learning(client: Learner) -> Iterator[None]:
    """Forget the limits `client` learned if a request is refused TOO_LARGE: its broker may have
    restarted with smaller ones, so the next submit_many asks again."""
    try:
        yield
    except RequestRefused as exc:
        if exc.code == ErrorCode.TOO_LARGE:
            client.limits = None
        raise


# -- tasks ------------------------------------------------------------------------------------


def get(task_id: str) -> Call[TaskInfo]:
    return Call(Kind.GET, {"id": task_id}, TaskInfo.from_wire)


def wait(task_id: str, timeout: float) -> Call[TaskInfo]:
    """WAIT: the broker answers when the task ends, or after `timeout` with WaitTimeout."""
    limit = _seconds("timeout", timeout, zero_ok=True, example="30")
    return Call(Kind.WAIT, {"id": task_id, "timeout_s": limit}, TaskInfo.from_wire, limit + WAIT_MARGIN_S)


def cancel(task_id: str) -> Call[TaskInfo]:
    return Call(Kind.CANCEL, {"id": task_id}, TaskInfo.from_wire)


def tasks(
    queue: str | None, state: str | None, task_type: str | None, limit: int, before: int | None
) -> Call[list[TaskInfo]]:
    filters = {"queue": queue, "state": state, "type": task_type, "before": before}
    body: dict[str, Any] = {k: v for k, v in filters.items() if v is not None}
    body["limit"] = limit
    return Call(Kind.TASK_LIST, body, lambda data: [TaskInfo.from_wire(t) for t in data])


def retry(task_id: str) -> Call[TaskInfo]:
    return Call(Kind.TASK_RETRY, {"id": task_id}, TaskInfo.from_wire)


def delete(task_id: str) -> Call[None]:
    return Call(Kind.TASK_DELETE, {"id": task_id}, _nothing)


# -- queues, workers, the broker --------------------------------------------------------------


def queues() -> Call[list[QueueInfo]]:
    return Call(Kind.QUEUE_LIST, {}, lambda data: [QueueInfo.from_wire(q) for q in data])


def queue_info(name: str) -> Call[QueueInfo]:
    return Call(Kind.QUEUE_INFO, {"name": name}, QueueInfo.from_wire)


def _tries_problem(value: object) -> str | None:
    return None if value == -1 and not isinstance(value, bool) else options.count_problem(value, minimum=1)


# Each queue limit: its wire name, its check, an example.
QUEUE_LIMITS: dict[str, tuple[str, Callable[[object], str | None], str]] = {
    "max_concurrent": ("max_concurrent", lambda v: options.count_problem(v, minimum=1), "50"),
    "max_run_time": ("max_run_time_s", options.seconds_problem, "3600"),
    "max_tries": ("max_tries", _tries_problem, "25 (-1: unlimited)"),
    "retention": ("retention_s", lambda v: options.seconds_problem(v, zero_ok=True), "86400"),
    "dead_max": ("dead_max", lambda v: options.count_problem(v, minimum=0), "10000"),
    "dead_retention": ("dead_retention_s", lambda v: options.seconds_problem(v, zero_ok=True), "7776000"),
    "backoff": ("backoff_s", lambda v: options.seconds_problem(v, zero_ok=True), "1"),
}


def configure_queue(name: str, **limits: float | None) -> Call[QueueInfo]:
    """QUEUE_CONFIGURE: the given limits (seconds for times, whole numbers for counts), checked."""
    body: dict[str, Any] = {"name": name}
    for key, value in limits.items():
        if value is not None:
            wire_name, problem_of, example = QUEUE_LIMITS[key]
            if problem := problem_of(value):
                raise InvalidArgument(options.refusal(key, value, problem, example))
            body[wire_name] = value
    return Call(Kind.QUEUE_CONFIGURE, body, QueueInfo.from_wire)


def pause_queue(name: str) -> Call[QueueInfo]:
    return Call(Kind.QUEUE_PAUSE, {"name": name}, QueueInfo.from_wire)


def resume_queue(name: str) -> Call[QueueInfo]:
    return Call(Kind.QUEUE_RESUME, {"name": name}, QueueInfo.from_wire)


def purge_queue(name: str) -> Call[int]:
    return Call(Kind.QUEUE_PURGE, {"name": name}, lambda data: int(data["purged"]))


def delete_queue(name: str, force: bool) -> Call[None]:
    return Call(Kind.QUEUE_DELETE, {"name": name, "force": force}, _nothing)


def workers() -> Call[list[WorkerInfo]]:
    return Call(Kind.WORKERS, {}, lambda data: [WorkerInfo.from_wire(w) for w in data])


def info() -> Call[dict[str, Any]]:
    return Call(Kind.INFO, {}, dict)


# -- cron -------------------------------------------------------------------------------------


def add_cron(name: str, cron: str, task_type: str, payload: Any, queue: str) -> Call[CronInfo]:
    body = {"name": name, "cron": cron, "type": task_type, "payload": encode_value(payload), "queue": queue}
    return Call(Kind.CRON_ADD, body, CronInfo.from_wire)


def crons() -> Call[list[CronInfo]]:
    return Call(Kind.CRON_LIST, {}, lambda data: [CronInfo.from_wire(c) for c in data])


def cron(name: str) -> Call[CronInfo]:
    return Call(Kind.CRON_GET, {"name": name}, CronInfo.from_wire)


def delete_cron(name: str) -> Call[None]:
    return Call(Kind.CRON_DELETE, {"name": name}, _nothing)


def _nothing(data: Any) -> None:
    return None


def curve_keys(secret: str | None, server: str | None) -> ClientKeys | None:
    """The CURVE keys a client connects with (None: plain), or InvalidArgument naming the file."""
    try:
        return ClientKeys.from_files(secret, server)
    except KeyFileError as exc:
        raise InvalidArgument(str(exc)) from None


def signing_key(path: str | None) -> SigningKey | None:
    """The key a client signs its tasks with (None: unsigned), or InvalidArgument naming the file."""
    if path is None:
        return None
    try:
        return load_signing_key(path)
    except SigningKeyError as exc:
        raise InvalidArgument(str(exc)) from None


def signed(call: Call[T], key: SigningKey | None) -> Call[T]:
    """Sign every task of a SUBMIT call (ids are made here when absent: the signature covers them)."""
    if key is None:
        return call
    queue = call.body["queue"]
    for item in call.body["tasks"]:
        item.setdefault("id", secrets.token_hex(10))
        item["signature"] = sign(key, item["id"], queue, item["type"], item["payload"])
    return call
