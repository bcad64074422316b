"""Handlers for tests/test_worker_features.py: middleware, the error handler, extend, recycling, cancel.

The error handler writes one line per call to $AJQ_TEST_DIR/errors.log:
`<task id> <error type> <tries> <max_tries> <pid>`; handlers that start record it in events.log.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ajq import RetryPolicy, Router, Task, TerminateTask
from tests.apps.basic import record

router = Router(retry=RetryPolicy([0.05]))  # fast retries for tests
ERRORS = Path(os.environ.get("AJQ_TEST_DIR", "/tmp")) / "errors.log"
HELD: list[bytes] = []  # memory a handler keeps, as a leak would, until its process is replaced


@router.use
def outer(task: Task, call_next: Callable[[Task], Any]) -> Any:
    """Registered first, so outermost: records around everything else for 'trace' tasks."""
    if task.type != "trace":
        return call_next(task)
    task.payload.append("outer-in")
    result = call_next(task)
    result.append("outer-out")
    return result


@router.use
def inner(task: Task, call_next: Callable[[Task], Any]) -> Any:
    """Registered second, so just around the handler."""
    if task.type != "trace":
        return call_next(task)
    task.payload.append("inner-in")
    result = call_next(task)
    result.append("inner-out")
    return result


@router.on_error
def on_error(task: Task, error: BaseException, tries: int, max_tries: int) -> None:
    """Append one line per call; raise afterwards when the payload asks, to show nothing breaks."""
    fd = os.open(ERRORS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{task.id} {type(error).__name__} {tries} {max_tries} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    if isinstance(task.payload, dict) and task.payload.get("hook_raises"):
        raise RuntimeError("the error handler fails on purpose")
    if isinstance(task.payload, dict) and task.payload.get("hook_sleep"):
        time.sleep(task.payload["hook_sleep"])  # a slow hook (a network call that hangs)


@router.handler("trace")
def trace(task: Task) -> list[str]:
    task.payload.append("handler")
    return list(task.payload)


@router.handler("echo")
def echo(task: Task) -> Any:
    return task.payload


@router.handler("fail")
def fail(task: Task) -> None:
    raise ValueError("fails on purpose")


@router.handler("terminate")
def terminate(task: Task) -> None:
    raise TerminateTask("can never work")


@router.handler("die")
def die(task: Task) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@router.handler("sleep")
def sleep(task: Task) -> str:
    record("start", task)
    time.sleep(task.payload["s"])
    record("end", task)
    return "slept"


@router.handler("long")
def long(task: Task) -> int:
    """Runs payload['s'] seconds, past max_run_time, renewing its lease with extend(3) every 0.5 s."""
    record("start", task)
    end = time.monotonic() + task.payload["s"]
    while time.monotonic() < end:
        task.extend(3)
        time.sleep(min(0.5, max(0.0, end - time.monotonic())))
    record("end", task)
    return task.tries


@router.handler("pid")
def pid(task: Task) -> int:
    return os.getpid()


@router.handler("hog")
def hog(task: Task) -> int:
    """Keeps payload['mb'] MB (touched, so resident) in a module global and returns its pid."""
    HELD.append(b"\x01" * (task.payload["mb"] << 20))
    return os.getpid()


@router.handler("deps")
def deps(task: Task) -> dict[str, Any]:
    return task.dependency_results


@router.handler("extend_once")
def extend_once(task: Task) -> float:
    task.extend(task.payload["s"])
    return task.deadline.timestamp()


@router.handler("fencing")
def fencing(task: Task) -> list[int]:
    """The fencing tokens a handler would write with its own data."""
    return [task.try_number, task.lease_token]
