"""Requests as (kind, body) pairs, and replies as models: shared by Client and AsyncClient."""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from client.errors import ClientError
from protocol import Kind, encode_value
from protocol.limits import MAX_BATCH, MAX_PAYLOAD_BYTES

DEFAULT_ENDPOINT = "tcp://127.0.0.1:7480"
DEFAULT_QUEUE = "DEFAULT"
BATCH_BYTES = 4 * 1024 * 1024  # a SUBMIT frame stays under half the broker's frame limit

Request = tuple[Kind, dict[str, Any]]


def endpoint(given: str | None) -> str:
    return given or os.environ.get("AJQ_BROKER", DEFAULT_ENDPOINT)


def task_item(task_type: str, payload: Any, task_id: str | None, deadline: datetime | float | None) -> dict[str, Any]:
    if not isinstance(task_type, str):
        raise ClientError(f"task type must be a str, not {type(task_type).__name__}")
    try:
        blob = encode_value(payload)
    except TypeError as exc:
        raise ClientError(f"payload of {task_type!r}: {exc}") from None
    if len(blob) > MAX_PAYLOAD_BYTES:
        raise ClientError(f"payload of {task_type!r} is {len(blob)} bytes, over the limit of {MAX_PAYLOAD_BYTES}")
    item: dict[str, Any] = {"type": task_type, "payload": blob}
    if task_id is not None:
        item["id"] = task_id
    if deadline is not None:
        item["deadline"] = deadline.timestamp() if isinstance(deadline, datetime) else float(deadline)
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
            yield task_item(t["type"], t.get("payload"), t.get("id"), t.get("deadline"))
        else:
            task_type, payload = t
            yield task_item(task_type, payload, None, None)


def configure_body(
    name: str, max_concurrent: int | None, max_run_time: float | None, max_tries: int | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name}
    if max_concurrent is not None:
        body["max_concurrent"] = max_concurrent
    if max_run_time is not None:
        body["max_run_time_s"] = float(max_run_time)
    if max_tries is not None:
        body["max_tries"] = max_tries
    return body
