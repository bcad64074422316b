"""A pool child: forked by the supervisor with the app imported; runs one task at a time.

It speaks to the supervisor over one pipe: a msgpack task in, a msgpack outcome out. It never
touches the supervisor's ZeroMQ socket and leaves with os._exit, so no inherited state is torn down.
"""

from __future__ import annotations

import logging
import os
import signal
import traceback
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any

import msgpack

from protocol import decode_value, encode_value
from protocol.limits import MAX_ERROR_CHARS, MAX_PAYLOAD_BYTES
from worker.errors import TerminateTask
from worker.router import Router
from worker.task import Task

log = logging.getLogger("ajq.task")


def child_main(conn: Connection, router: Router) -> None:
    """Serve tasks until the pipe closes. Never returns."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the supervisor decides
    signal.signal(signal.SIGTSTP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    code = 0
    try:
        while True:
            try:
                data = conn.recv_bytes()
            except (EOFError, OSError):
                break
            conn.send_bytes(msgpack.packb(run_one(router, msgpack.unpackb(data, raw=False))))
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def run_one(router: Router, msg: dict[str, Any]) -> dict[str, Any]:
    """Run one task; return its outcome: complete with a result, fail or terminate with an error."""
    task = Task(
        id=msg["id"],
        type=msg["type"],
        queue=msg["queue"],
        payload=decode_value(msg["payload"]),
        tries=msg["tries"],
        max_tries=msg["max_tries"],
        deadline=datetime.fromtimestamp(msg["deadline_wall"], tz=UTC),
        log=logging.LoggerAdapter(log, {"task_id": msg["id"]}),
    )
    handler = router.route(task.type)
    if handler is None:
        return _fail(f"no handler for task type {task.type!r}: register one with @router.handler(...)")
    try:
        value = handler(task)
    except TerminateTask as exc:
        return {"outcome": "terminate", "error": _cut(f"TerminateTask: {exc}")}
    except BaseException as exc:
        return _fail(_describe(exc))
    try:
        blob = encode_value(value)
    except TypeError as exc:
        return _fail(f"the handler's return value cannot be stored: {exc}")
    if len(blob) > MAX_PAYLOAD_BYTES:
        return _fail(f"the handler's result is {len(blob)} bytes, over the limit of {MAX_PAYLOAD_BYTES}")
    return {"outcome": "complete", "result": blob}


def _fail(error: str) -> dict[str, Any]:
    return {"outcome": "fail", "error": _cut(error)}


def _describe(exc: BaseException) -> str:
    tb = "".join(traceback.format_exception(exc)[-6:])
    return f"{type(exc).__name__}: {exc}\n{tb}"


def _cut(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 20] + "\n...(cut)"
