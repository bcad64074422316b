"""Handlers for the integration tests. Each records what it did in $AJQ_TEST_DIR/events.log."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from ajq import RetryPolicy, Router, Task, TerminateTask

router = Router(retry=RetryPolicy([0.05]))  # fast retries for tests
EVENTS = Path(os.environ.get("AJQ_TEST_DIR", "/tmp")) / "events.log"


def record(what: str, task: Task) -> None:
    fd = os.open(EVENTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{what} {task.id} {time.time()} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


@router.handler("echo")
def echo(task: Task) -> Any:
    return task.payload


@router.handler("flaky")
def flaky(task: Task) -> str:
    if task.tries < task.payload["succeed_on"]:
        raise RuntimeError(f"try {task.tries} fails on purpose")
    return f"ok on try {task.tries}"


@router.handler("always_fail")
def always_fail(task: Task) -> None:
    raise ValueError("this handler always fails")


@router.handler("bad")
def bad(task: Task) -> None:
    raise TerminateTask("payload can never work")


@router.handler("email:new")
def email_new(task: Task) -> str:
    return "exact"


@router.handler("email:")
def email_any(task: Task) -> str:
    return f"prefix {task.type}"


@router.handler("")
def catch_all(task: Task) -> str:
    return f"catch-all {task.type}"


@router.handler("sleep")
def sleep(task: Task) -> str:
    """Sleeps payload['s'] seconds (only on try payload['only_try'] if given), recording start and end."""
    record("start", task)
    only = task.payload.get("only_try")
    if only is None or task.tries == only:
        time.sleep(task.payload["s"])
    record("end", task)
    return "slept"


@router.handler("die")
def die(task: Task) -> str:
    """SIGKILLs its own process until try payload['survive_on']."""
    record("start", task)
    if task.tries < task.payload.get("survive_on", 1_000):
        os.kill(os.getpid(), signal.SIGKILL)
    return f"survived on try {task.tries}"


@router.handler("exit")
def exit_now(task: Task) -> None:
    os._exit(3)


@router.handler("parents")
def parents(task: Task) -> Any:
    """Return what the handler was given of its parents' results."""
    return task.dependency_results


@router.handler("inflate")
def inflate(task: Task) -> str:
    """A result of payload['bytes'] characters, whatever the payload's size."""
    return "x" * task.payload["bytes"]
