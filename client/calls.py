"""Requests as (kind, body) pairs, and replies as models: shared by Client and AsyncClient."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ajq.client.errors import ClientError
from ajq.protocol import Kind, encode_value
from ajq.protocol.limits import MAX_BATCH, MAX_PAYLOAD_BYTES

BATCH_BYTES = 4 * 1024 * 1024  # a SUBMIT frame stays under half the broker's frame limit

Request = tuple[Kind, dict[str, Any]]


@dataclass(frozen=True)
class Options:
    """What submit() accepts beside type and payload."""

    task_id: str | None = None
    deadline: datetime | float | None = None  # not started by then: expired, never run
    run_at: datetime | float | None = None  # scheduled until then
    delay: float | None = None  # seconds from now: another way to say run_at
    unique_for: float | None = None  # seconds: refuse the same type+payload in the queue meanwhile
    depends_on: tuple[str, ...] = ()  # run once all of these completed
    load_results: bool = False  # hand the parents' results to the handler


def when(value: datetime | float) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def task_item(task_type: str, payload: Any, opts: Options = Options()) -> dict[str, Any]:
    if not isinstance(task_type, str):
        raise ClientError(f"task type must be a str, not {type(task_type).__name__}")
    try:
        blob = encode_value(payload)
    except TypeError as exc:
        raise ClientError(f"payload of {task_type!r}: {exc}") from None
    if len(blob) > MAX_PAYLOAD_BYTES:
        raise ClientError(f"payload of {task_type!r} is {len(blob)} bytes, over the limit of {MAX_PAYLOAD_BYTES}")
    item: dict[str, Any] = {"type": task_type, "payload": blob}
    if opts.task_id is not None:
        item["id"] = opts.task_id
    if opts.deadline is not None:
        item["deadline"] = when(opts.deadline)
    if opts.run_at is not None and opts.delay is not None:
        raise ClientError("give run_at or delay, not both")
    if opts.run_at is not None:
        item["run_at"] = when(opts.run_at)
    if opts.delay is not None:
        item["run_at"] = time.time() + float(opts.delay)
    if opts.unique_for is not None:
        item["unique_for_s"] = float(opts.unique_for)
    if opts.depends_on:
        item["depends_on"] = list(opts.depends_on)
        item["load_results"] = opts.load_results
    return item


def submit_batches(queue: str, items: Iterable[dict[str, Any]]) -> Iterable[Request]:
    """SUBMIT requests of at most MAX_BATCH tasks and about BATCH_BYTES each."""
    batch: list[dict[str, Any]] = []
    size = 0
    for item in items:
        n = len(item["payload"]) + len(item["type"]) + 64
        if batch and (len(batch) >= MAX_BATCH or size + n > BATCH_BYTES):
            yield Kind.SUBMIT, {"queue": queue, "tasks": batch}
            batch, size = [], 0
        batch.append(item)
        size += n
    if batch:
        yield Kind.SUBMIT, {"queue": queue, "tasks": batch}


def many_items(tasks: Iterable[Any]) -> Iterable[dict[str, Any]]:
    """submit_many accepts (type, payload) pairs or dicts with type, payload, id, deadline."""
    for t in tasks:
        if isinstance(t, dict):
            extra = {k: v for k, v in t.items() if k not in ("type", "payload", "id")}
            extra["depends_on"] = tuple(extra.get("depends_on", ()))
            yield task_item(t["type"], t.get("payload"), Options(task_id=t.get("id"), **extra))
        else:
            task_type, payload = t
            yield task_item(task_type, payload)


def configure_body(name: str, **limits: float | None) -> dict[str, Any]:
    """QUEUE_CONFIGURE: the given limits (seconds for times) under their wire names."""
    wire = {
        "max_concurrent": ("max_concurrent", int),
        "max_run_time": ("max_run_time_s", float),
        "max_tries": ("max_tries", int),
        "retention": ("retention_s", float),
        "dead_max": ("dead_max", int),
        "dead_retention": ("dead_retention_s", float),
    }
    body: dict[str, Any] = {"name": name}
    for key, value in limits.items():
        if value is not None:
            field_name, kind = wire[key]
            body[field_name] = kind(value)
    return body
