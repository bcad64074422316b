"""The lease bound on the child's side: a pool child killed by its own kernel timer, with the
supervisor out of the picture (real forked children, no broker)."""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Iterator
from multiprocessing.connection import wait

import pytest

from ajq import Router, Task
from ajq.protocol import encode_value
from ajq.worker.pool import Child, Extend, Pool

router = Router()


@router.handler("sleep")
def _sleep(task: Task) -> str:
    task.extend(60)  # tells the test, through the pipe, that the handler runs
    time.sleep(float(task.payload))
    return "slept"


def _item(seconds: float) -> dict[str, object]:
    return {
        "id": "t1", "token": 7, "type": "sleep", "queue": "Q", "payload": encode_value(seconds),
        "tries": 1, "max_tries": 3, "run_time_s": 60.0, "deadline_wall": time.time() + 60,
    }  # fmt: skip


@pytest.fixture
def pool() -> Iterator[Pool]:
    p = Pool(1, router)
    p.start()
    yield p
    p.stop()


def _one(pool: Pool) -> Child:
    [child] = pool.children.values()
    return child


def _ended(child: Child, timeout: float) -> bool:
    """The child's pipe is readable (an outcome, or EOF because it died) within `timeout`."""
    return bool(wait([child.conn], timeout))


def _collected(pool: Pool) -> list[tuple[object, bool, str]]:
    """What pool.dead() reports once the dead child has exited (it never blocks: poll it)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        dead = pool.dead(time.monotonic())
        if dead:
            return list(dead)
    raise AssertionError("the dead child was not collected within 5 s")


@pytest.mark.timeout(20)
def test_a_stopped_child_is_killed_by_its_timer_at_kill_at(pool: Pool) -> None:
    # Given a child running a 30 s task whose kill time is 0.3 s away.
    child = _one(pool)
    pool.assign(child, _item(30), math.inf, math.inf, time.monotonic() + 0.3, time.monotonic())
    assert _ended(child, 10) and isinstance(pool.read(child), Extend)
    # When the child itself is frozen (SIGSTOP: neither it nor a supervisor can act),
    os.kill(child.pid, signal.SIGSTOP)
    # Then the kernel kills it anyway, at its kill time.
    assert _ended(child, 10)
    assert pool.read(child) is None
    pool.died(child, time.monotonic())
    assert _collected(pool) == [(child.task, False, "killed by SIGKILL (out of memory, or killed)")]


@pytest.mark.timeout(20)
def test_kill_at_moved_later_while_the_task_runs_lets_it_finish(pool: Pool) -> None:
    # Given a child running a 1 s task whose kill time is 0.3 s away,
    child = _one(pool)
    start = time.monotonic()
    pool.assign(child, _item(1.0), math.inf, math.inf, start + 0.3, start)
    assert _ended(child, 10) and isinstance(pool.read(child), Extend)
    # When the supervisor confirms contact (kill_at moves) before then,
    child.kill_at.value = start + 30
    # Then the task runs to its end.
    assert _ended(child, 10)
    assert pool.read(child) == {"outcome": "complete", "result": encode_value("slept")}


@pytest.mark.timeout(20)
def test_a_task_whose_kill_time_has_passed_never_starts(pool: Pool) -> None:
    # Given a task handed over after its kill time (the supervisor was slow to pass it on).
    child = _one(pool)
    pool.assign(child, _item(30), math.inf, math.inf, time.monotonic() - 1, time.monotonic())
    # Then the child refuses it at once, without running the handler, and stays alive.
    assert _ended(child, 10)
    outcome = pool.read(child)
    assert isinstance(outcome, dict) and outcome["outcome"] == "fail"
    assert "lease bound passed before the task could start" in outcome["error"]
    child.task = None
    pool.assign(child, _item(0), math.inf, math.inf, time.monotonic() + 30, time.monotonic())
    assert _ended(child, 10) and isinstance(pool.read(child), Extend)
    assert _ended(child, 10) and pool.read(child) == {"outcome": "complete", "result": encode_value("slept")}
