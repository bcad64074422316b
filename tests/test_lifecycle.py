"""A task's life through real broker and worker processes: results, retries, routing, failures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ajq import Client
from tests.harness import BrokerHandle, Proc, start_worker

APP = "tests.apps.basic:router"


@pytest.fixture
def worker(broker: BrokerHandle, tmp_path: Path) -> Iterator[Proc]:
    """Given a worker with 2 processes on DEFAULT and on LIMITED (max_tries 2, max_run_time 1 s)."""
    broker.client().configure_queue("LIMITED", max_tries=2, max_run_time=1)
    proc = start_worker(broker, tmp_path, APP, procs=2, queues=("DEFAULT", "LIMITED"))
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def c(broker: BrokerHandle, worker: Proc) -> Client:
    return broker.client()


def test_complete_with_result(c: Client) -> None:
    # When a task is submitted, Then it completes and its result is stored.
    t = c.submit("echo", {"n": 42, "s": "é"})
    info = c.wait(t.id, timeout=20)
    assert (info.state, info.result, info.tries) == ("complete", {"n": 42, "s": "é"}, 1)
    assert info.finished_at is not None and info.started_at is not None


def test_retry_then_success(c: Client) -> None:
    # Given a handler that fails its first two tries, Then the third completes.
    info = c.wait(c.submit("flaky", {"succeed_on": 3}).id, timeout=20)
    assert (info.state, info.tries, info.result) == ("complete", 3, "ok on try 3")


def test_terminate_task_ends_at_once(c: Client) -> None:
    info = c.wait(c.submit("bad", None).id, timeout=20)
    assert (info.state, info.tries) == ("terminated", 1)
    assert "payload can never work" in (info.last_error or "")


def test_out_of_tries_is_dead_with_last_error(c: Client) -> None:
    # Given a queue with max_tries 2, When the handler always fails, Then the task is dead after 2 tries.
    info = c.wait(c.submit("always_fail", None, queue="LIMITED").id, timeout=20)
    assert (info.state, info.tries) == ("dead", 2)
    assert "ValueError: this handler always fails" in (info.last_error or "")


@pytest.mark.parametrize(
    ("task_type", "expected"),
    [("email:new", "exact"), ("email:bounce", "prefix email:bounce"), ("sms:new", "catch-all sms:new")],
)
def test_routing_exact_prefix_catch_all(c: Client, task_type: str, expected: str) -> None:
    assert c.wait(c.submit(task_type, {}).id, timeout=20).result == expected


def test_hard_timeout_kills_the_child_and_pool_heals(c: Client) -> None:
    # Given max_run_time 1 s, When a handler sleeps 30 s, Then its process is killed: a failed try each time.
    info = c.wait(c.submit("sleep", {"s": 30}, queue="LIMITED").id, timeout=30)
    assert (info.state, info.tries) == ("dead", 2)
    assert "hard timeout" in (info.last_error or "")
    # And the pool still serves.
    assert c.wait(c.submit("echo", 1, queue="LIMITED").id, timeout=20).state == "complete"


def test_child_killed_mid_task_costs_one_try(c: Client) -> None:
    # When the process running a task is SIGKILLed on its first try, Then the second try completes.
    info = c.wait(c.submit("die", {"survive_on": 2}).id, timeout=20)
    assert (info.state, info.tries, info.result) == ("complete", 2, "survived on try 2")


def test_child_death_is_named_in_the_error(c: Client) -> None:
    killed = c.wait(c.submit("die", {}, queue="LIMITED").id, timeout=20)
    exited = c.wait(c.submit("exit", {}, queue="LIMITED").id, timeout=20)
    assert killed.state == exited.state == "dead"
    assert "killed by SIGKILL" in (killed.last_error or "")
    assert "exited with code 3" in (exited.last_error or "")
    assert c.wait(c.submit("echo", 2).id, timeout=20).state == "complete"


def test_no_handler_is_a_failed_try_naming_the_type(broker: BrokerHandle, tmp_path: Path) -> None:
    c = broker.client()
    c.configure_queue("ONE", max_tries=1)
    w = start_worker(broker, tmp_path, "tests.apps.nocatch:router", queues=("ONE",))
    try:
        info = c.wait(c.submit("unknown:type", {}, queue="ONE").id, timeout=20)
    finally:
        w.stop()
    assert (info.state, info.tries) == ("dead", 1)
    assert "no handler for task type 'unknown:type'" in (info.last_error or "")


def test_many_tasks_each_complete_once(c: Client) -> None:
    ids = c.submit_many([("echo", i) for i in range(500)])
    results = [c.wait(i, timeout=30) for i in ids]
    assert [r.result for r in results] == list(range(500))
    assert all(r.tries == 1 for r in results)
