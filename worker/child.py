"""A pool child: forked by the supervisor with the app imported; runs one task at a time.

It speaks to the supervisor over one pipe of msgpack maps. In: a delivery item. Out, while the task
runs: `{"extend": seconds, "token": t}` (the handler called task.extend) and `{"on_error": t}` (the
error handler runs now, so the supervisor must not run it again for this try); then exactly one
outcome `{"outcome": ..., "result"?: bytes, "error"?: str}`, which ends the task. It never touches
the supervisor's ZeroMQ socket and leaves with os._exit, so no inherited state is torn down.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import msgpack
from nacl.signing import VerifyKey

from ajq.protocol import encode_value, signing
from ajq.protocol.limits import HARD_LIMITS, cut_error
from ajq.worker.errors import BadResult, NoHandler, TerminateTask
from ajq.worker.router import Router
from ajq.worker.task import Task, task_from_item
from ajq.worker.watchdog import Watchdog

Send = Callable[[dict[str, Any]], None]


def child_main(conn: Connection, router: Router, kill_at: Any, verify: VerifyKey | None = None) -> None:
    """Serve tasks until the pipe closes, each under the lease bound's watchdog. Never returns."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the supervisor decides
    signal.signal(signal.SIGTSTP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    send = _sender(conn)
    code = 0
    try:
        watchdog = Watchdog(kill_at)
        while True:
            try:
                data = conn.recv_bytes()
            except (EOFError, OSError):
                break
            if not watchdog.arm():
                send(_fail("the lease bound passed before the task could start: its lease is no longer ours"))
                continue
            outcome = run_one(router, msgpack.unpackb(data, raw=False), send, verify)
            watchdog.disarm()
            send(outcome)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _sender(conn: Connection) -> Send:
    """Send one msgpack map on the pipe; locked, as a handler's thread may call task.extend."""
    lock = threading.Lock()

    def send(msg: dict[str, Any]) -> None:
        data = msgpack.packb(msg)
        with lock:
            conn.send_bytes(data)

    return send


class _Link:
    """This try's side channel to the supervisor: task.extend and the error-handler marker.

    Without a pipe (run_one called directly) it sends nothing. Inert once the try is over, so a late
    task.extend from a handler's thread cannot reach the next task.
    """

    def __init__(self, send: Send | None, token: int) -> None:
        self.send = send
        self.token = token

    def extend(self, seconds: float) -> None:
        """Ask the supervisor to move this try's hard timeout and renew the broker's lease."""
        self._put({"extend": seconds, "token": self.token})

    def error_handler_runs(self) -> None:
        """Tell the supervisor the error handler runs here for this try (so it never runs it twice)."""
        self._put({"on_error": self.token})

    def close(self) -> None:
        """The try is over: send nothing more."""
        self.send = None

    def _put(self, msg: dict[str, Any]) -> None:
        """Send `msg` if the try is still on; a closed pipe is not the handler's problem."""
        send = self.send
        if send is not None:
            with contextlib.suppress(OSError):  # the supervisor is gone: this process dies with it
                send(msg)


def run_one(
    router: Router, msg: dict[str, Any], send: Send | None = None, verify: VerifyKey | None = None
) -> dict[str, Any]:
    """Run one task; return its outcome: complete with a result, fail or terminate with an error.

    `send` (the pipe) carries task.extend and the error-handler marker; without it they stay local.
    With `verify`, a task whose signature does not hold ends terminated, without running (checked
    here, in the child, so the cost of a check is spread over the pool, not paid in the loop).
    """
    if verify is not None and (problem := signing.refusal(verify, msg)) is not None:
        return {"outcome": "terminate", "error": problem}
    link = _Link(send, msg.get("token", 0))
    try:
        task = task_from_item(msg, link.extend)
    except Exception as exc:  # msgpack raises several types on a corrupt blob
        return _fail(f"the task's payload or a parent's result cannot be decoded: {type(exc).__name__}: {exc}")
    try:
        return _run(router, task, link)
    finally:
        link.close()


def _run(router: Router, task: Task, link: _Link) -> dict[str, Any]:
    """Route, run the handler inside the middleware, and check its result."""
    handler = router.route(task.type)
    if handler is None:
        error = NoHandler(f"no handler for task type {task.type!r}: register one with @router.handler(...)")
        return _failed_try(router, task, link, error)
    try:
        value = router.wrap(handler)(task)
    except TerminateTask as exc:
        _report(router, task, link, exc)
        return {"outcome": "terminate", "error": cut_error(f"TerminateTask: {exc}")}
    except BaseException as exc:
        _report(router, task, link, exc)
        return _fail(_describe(exc))
    try:
        blob = encode_value(value)
    except TypeError as exc:
        return _failed_try(router, task, link, BadResult(f"the handler's return value cannot be stored: {exc}"))
    most = HARD_LIMITS.max_payload_bytes  # no broker takes more; the supervisor checks the broker's own limit
    if len(blob) > most:
        too_big = BadResult(f"the handler's result is {len(blob)} bytes, over the limit of {most}")
        return _failed_try(router, task, link, too_big)
    return {"outcome": "complete", "result": blob}


def _failed_try(router: Router, task: Task, link: _Link, error: BaseException) -> dict[str, Any]:
    """A failed try the worker found itself: tell the error handler, then fail with its message."""
    _report(router, task, link, error)
    return _fail(str(error))


def _report(router: Router, task: Task, link: _Link, error: BaseException) -> None:
    """Run the error handler here, first telling the supervisor so it never runs it again for this try."""
    if router.has_error_handler:
        link.error_handler_runs()
        router.report_error(task, error)


def _fail(error: str) -> dict[str, Any]:
    """A `fail` outcome with its error cut to what the broker stores."""
    return {"outcome": "fail", "error": cut_error(error)}


def _describe(exc: BaseException) -> str:
    """The exception and the end of its traceback, for last_error."""
    tb = "".join(traceback.format_exception(exc)[-6:])
    return f"{type(exc).__name__}: {exc}\n{tb}"
