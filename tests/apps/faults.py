"""Handlers for the fault suite. Every run is written to $AJQ_TEST_DIR/runs.log as it happens:
start, a tick every 20 ms while it works, and end; each line names the task, try, lease token and
pid, so tests/faults/ledger.py can count lost, duplicated and overlapping runs."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from ajq import RetryPolicy, Router, Task

router = Router(retry=RetryPolicy([0.05]))
RUNS = Path(os.environ.get("AJQ_TEST_DIR", "/tmp")) / "runs.log"
TICK_S = 0.02


def record(what: str, task: Task) -> None:
    """One line, written with one O_APPEND write so lines from many processes never interleave."""
    line = f"{what} {task.id} {task.try_number} {task.lease_token} {os.getpid()} {time.time():.6f}\n"
    fd = os.open(RUNS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@router.handler("work")
def work(task: Task) -> str:
    """Works payload['s'] seconds (default 0), ticking, so a run that goes on is seen going on; its
    result is payload['result_kb'] KB (default: a word)."""
    record("start", task)
    payload = task.payload or {}
    until = time.monotonic() + float(payload.get("s", 0))
    while time.monotonic() < until:
        time.sleep(min(TICK_S, max(0.0, until - time.monotonic())))
        record("tick", task)
    record("end", task)
    return "x" * (1024 * int(payload["result_kb"])) if "result_kb" in payload else "done"


@router.handler("hang")
def hang(task: Task) -> None:
    """Never returns and never sleeps: only a kill stops it."""
    record("start", task)
    while True:
        pass


@router.handler("poison_child")
def poison_child(task: Task) -> None:
    """Kills its own process, every try."""
    record("start", task)
    os.kill(os.getpid(), signal.SIGKILL)


@router.handler("poison_worker")
def poison_worker(task: Task) -> None:
    """Kills its whole worker (the supervisor, then itself), every try."""
    record("start", task)
    os.kill(os.getppid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
