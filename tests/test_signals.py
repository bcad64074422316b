"""Worker signals, run against a real `ajworker` subprocess (asynq's rules)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from ajq import WaitTimeout
from tests.harness import BrokerHandle, Proc, events, start_worker, wait_for

APP = "tests.apps.basic:router"


def started(test_dir: Path) -> int:
    return sum(1 for e in events(test_dir) if e[0] == "start")


@pytest.mark.timeout(60)
def test_sigterm_finishes_running_tasks_and_hands_back_the_rest(
    broker: BrokerHandle, tmp_path: Path, procs: list[Proc]
) -> None:
    # Given a 1-process worker running a 1 s task with more delivered to it (prefetch).
    c = broker.client()
    w = start_worker(broker, tmp_path, APP, queues=("S",))
    procs.append(w)
    ids = c.submit_many([("sleep", {"s": 1.0}) for _ in range(4)], queue="S")
    wait_for(lambda: started(tmp_path) == 1, 15, "the first task to start")
    # When it gets SIGTERM.
    w.signal(signal.SIGTERM)
    # Then it exits cleanly once the running task is done,
    assert w.wait(15) == 0
    states = [c.get(i) for i in ids]
    # the running task completed, and the others are back in the queue without a try used.
    assert [s.state for s in states].count("complete") == 1
    waiting = [s for s in states if s.state != "complete"]
    assert [(s.state, s.tries) for s in waiting] == [("new", 0)] * 3
    assert started(tmp_path) == 1


@pytest.mark.timeout(60)
def test_shutdown_timeout_kills_and_hands_back_without_a_try(
    broker: BrokerHandle, tmp_path: Path, procs: list[Proc]
) -> None:
    # Given a worker with a 0.5 s shutdown timeout running a 30 s task.
    c = broker.client()
    w = start_worker(broker, tmp_path, APP, queues=("S",), extra=["--shutdown-timeout", "0.5"])
    procs.append(w)
    t = c.submit("sleep", {"s": 30}, queue="S")
    wait_for(lambda: started(tmp_path) == 1, 15, "the task to start")
    # When SIGINT arrives, Then the worker leaves after the timeout and the task is back, no try used.
    w.signal(signal.SIGINT)
    assert w.wait(15) == 0
    info = c.get(t.id)
    assert (info.state, info.tries) == ("new", 0)
    # And another worker runs it.
    procs.append(start_worker(broker, tmp_path, APP, queues=("S",)))
    wait_for(lambda: started(tmp_path) == 2, 15, "the task to start again")


@pytest.mark.timeout(60)
def test_sigtstp_stops_fetching_but_running_tasks_finish(
    broker: BrokerHandle, tmp_path: Path, procs: list[Proc]
) -> None:
    c = broker.client()
    w = start_worker(broker, tmp_path, APP, queues=("S",))
    procs.append(w)
    running = c.submit("sleep", {"s": 0.5}, queue="S")
    wait_for(lambda: started(tmp_path) == 1, 15, "the task to start")
    # When SIGTSTP arrives, Then the running task completes but no new task starts.
    w.signal(signal.SIGTSTP)
    assert c.wait(running.id, timeout=15).state == "complete"
    later = c.submit("echo", 1, queue="S")
    with pytest.raises(WaitTimeout):
        c.wait(later.id, timeout=1.5)
    assert c.get(later.id).state == "new"
    assert w.alive()
    # And SIGTERM still shuts it down.
    w.signal(signal.SIGTERM)
    assert w.wait(15) == 0
