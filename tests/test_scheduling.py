"""Issue 3's scheduling and flow with real processes: delays, deadlines, unique tasks, custom
ids, dependencies, periodic tasks, queue pause/resume/purge/delete, retention, events."""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgpack
import pytest
import zmq

from ajq import Client, DuplicateTask, InvalidRequest, QueueNotFound, TaskNotFound
from tests.harness import BrokerHandle, Proc, start_worker, wait_for

APP = "tests.apps.basic:router"


@pytest.fixture
def worker(broker: BrokerHandle, tmp_path: Path) -> Iterator[Proc]:
    proc = start_worker(broker, tmp_path, APP, procs=2, queues=("DEFAULT", "Q"))
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def c(broker: BrokerHandle) -> Client:
    return broker.client()


def test_delayed_task_waits_then_starts_on_time(c: Client, worker: Proc) -> None:
    # Given a task delayed by 0.3 s, Then it is scheduled, and starts at its time, not before.
    t = c.submit("echo", 1, delay=0.3)
    info = c.get(t.id)
    assert info.state == "scheduled" and info.run_at is not None
    done = c.wait(t.id, timeout=20)
    assert done.state == "complete" and done.started_at is not None
    late_ms = (done.started_at - info.run_at).total_seconds() * 1000
    print(f"delayed start: {late_ms:.1f} ms after its time")
    assert 0 <= late_ms < 500


def test_deadline_expires_at_dispatch(c: Client, worker: Proc) -> None:
    c.pause_queue("Q")
    t = c.submit("echo", 1, queue="Q", deadline=datetime.now(UTC) + timedelta(seconds=0.2))
    wait_for(lambda: time.time() > t_deadline(c, t.id), 5, "the deadline to pass")
    c.resume_queue("Q")
    info = c.wait(t.id, timeout=10)
    assert (info.state, info.tries) == ("expired", 0)


def t_deadline(c: Client, task_id: str) -> float:
    deadline = c.get(task_id).deadline
    assert deadline is not None
    return deadline.timestamp()


def test_custom_id_is_refused_while_it_exists(c: Client) -> None:
    assert c.submit("echo", 1, task_id="order-42").id == "order-42"
    with pytest.raises(DuplicateTask, match="already exists"):
        c.submit("echo", 2, task_id="order-42")


def test_unique_for_refuses_a_twin_until_the_first_ends(c: Client, worker: Proc) -> None:
    # Given a unique task, Then a twin (same type, payload, queue) is refused, another payload is not.
    c.pause_queue("Q")
    first = c.submit("echo", {"order": 7}, queue="Q", unique_for=3600)
    with pytest.raises(DuplicateTask, match="unique for"):
        c.submit("echo", {"order": 7}, queue="Q", unique_for=3600)
    c.submit("echo", {"order": 8}, queue="Q", unique_for=3600)
    c.submit("echo", {"order": 7}, queue="DEFAULT", unique_for=3600)
    # When the first one ends (any final state: here cancelled), Then the lock is released.
    assert c.cancel(first.id).state == "terminated"
    second = c.submit("echo", {"order": 7}, queue="Q", unique_for=3600)
    c.resume_queue("Q")
    assert c.wait(second.id, timeout=20).state == "complete"
    assert c.submit("echo", {"order": 7}, queue="Q", unique_for=3600).id


def test_dependencies_wait_for_parents_then_run(c: Client, worker: Proc) -> None:
    a = c.submit("sleep", {"s": 0.2})
    b = c.submit("echo", "b")
    child = c.submit("echo", "child", depends_on=[a.id, b.id])
    assert c.get(child.id).state == "blocked"
    done = c.wait(child.id, timeout=20)
    assert done.state == "complete"
    assert done.started_at >= c.get(a.id).finished_at  # type: ignore[operator]


def test_a_failed_parent_makes_dependants_unreachable(c: Client, worker: Proc) -> None:
    c.configure_queue("Q", max_tries=1)
    parent = c.submit("always_fail", None, queue="Q")
    child = c.submit("echo", 1, depends_on=[parent.id])
    grandchild = c.submit("echo", 2, depends_on=[child.id])
    assert c.wait(grandchild.id, timeout=20).state == "unreachable"
    assert "which ended dead" in (c.get(child.id).last_error or "")
    with pytest.raises(TaskNotFound, match="does not exist"):
        c.submit("echo", 3, depends_on=["no-such-task"])


@pytest.mark.timeout(120)
def test_a_chain_of_100_runs_without_waiting_between_links(c: Client, worker: Proc) -> None:
    # Given a chain of 100 tasks, each depending on the one before, submitted to a paused queue.
    c.pause_queue("Q")
    ids: list[str] = []
    for i in range(100):
        ids.append(c.submit("echo", i, queue="Q", depends_on=ids[-1:]).id)
    # When the queue resumes, Then each link starts as soon as the one before it ends: no poll, no wait.
    c.resume_queue("Q")
    last = c.wait(ids[-1], timeout=60)
    links = [c.get(i) for i in ids]
    gaps = [
        (b.started_at - a.finished_at).total_seconds()  # type: ignore[operator]
        for a, b in itertools.pairwise(links)
    ]
    span = (last.finished_at - links[0].started_at).total_seconds()  # type: ignore[operator]
    print(
        f"chain of 100: {span * 1000:.0f} ms from the first start to the last end; gap between links "
        f"median {statistics.median(gaps) * 1000:.1f} ms, max {max(gaps) * 1000:.1f} ms"
    )
    assert all(t.state == "complete" for t in links)
    assert max(gaps) < 0.25


def test_periodic_task_fires_and_can_be_removed(c: Client, worker: Proc) -> None:
    cron = c.add_cron("tick", "* * * * * *", "echo", {"from": "cron"})  # every second
    assert cron.next_run is not None
    wait_for(lambda: c.queue_info("DEFAULT").counts.get("complete", 0) >= 2, 10, "two runs")
    assert [s.name for s in c.crons()] == ["tick"]
    c.delete_cron("tick")
    assert c.crons() == []
    with pytest.raises(InvalidRequest, match="not a cron expression"):
        c.add_cron("bad", "sometimes", "echo")


def test_pause_keeps_accepting_and_resume_runs(c: Client, worker: Proc) -> None:
    c.pause_queue("Q")
    t = c.submit("echo", 1, queue="Q")
    assert c.queue_info("Q").paused and c.get(t.id).state == "new"
    c.resume_queue("Q")
    assert c.wait(t.id, timeout=20).state == "complete"


def test_purge_deletes_waiting_tasks_only(c: Client, worker: Proc) -> None:
    done = c.submit("echo", 0, queue="Q")
    c.wait(done.id, timeout=20)
    c.pause_queue("Q")
    c.submit_many([("echo", i) for i in range(10)], queue="Q")
    assert c.purge_queue("Q") == 10
    counts = c.queue_info("Q").counts
    assert counts.get("new", 0) == 0 and counts["complete"] == 1


def test_delete_queue_refuses_while_running_unless_forced(c: Client, worker: Proc, tmp_path: Path) -> None:
    t = c.submit("sleep", {"s": 30}, queue="Q")
    wait_for(lambda: c.get(t.id).state == "active", 10, "the task to start")
    with pytest.raises(InvalidRequest, match="--force"):
        c.delete_queue("Q")
    c.delete_queue("Q", force=True)
    with pytest.raises(QueueNotFound):
        c.queue_info("Q")
    with pytest.raises(TaskNotFound):
        c.get(t.id)


def test_retention_trims_ended_tasks_and_caps_dead_ones(c: Client, worker: Proc) -> None:
    c.configure_queue("Q", retention=0.2, dead_max=2, max_tries=1)
    ids = c.submit_many([("echo", i) for i in range(5)] + [("always_fail", i) for i in range(5)], queue="Q")
    wait_for(lambda: all(_gone_or_dead(c, i) for i in ids), 15, "retention to trim")
    counts = c.queue_info("Q").counts
    assert counts.get("complete", 0) == 0 and counts.get("dead", 0) == 2


def _gone_or_dead(c: Client, task_id: str) -> bool:
    try:
        return c.get(task_id).state == "dead"
    except TaskNotFound:
        return True


def test_task_list_retry_and_delete(c: Client, worker: Proc) -> None:
    c.configure_queue("Q", max_tries=1)
    dead = c.wait(c.submit("always_fail", None, queue="Q").id, timeout=20)
    assert dead.state == "dead"
    listed = c.tasks(queue="Q", state="dead")
    assert [t.id for t in listed] == [dead.id]
    again = c.retry(dead.id)
    assert (again.state, again.tries) == ("new", 0)
    assert c.wait(dead.id, timeout=20).state == "dead"
    c.delete(dead.id)
    with pytest.raises(TaskNotFound):
        c.get(dead.id)


def test_every_state_change_is_published(c: Client, worker: Proc) -> None:
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(c.info()["events"])
    try:
        seen: list[str] = []

        def events_for(task_id: str) -> list[str]:
            while sub.poll(50):
                _, data = sub.recv_multipart()
                event = msgpack.unpackb(data)
                if event["id"] == task_id:
                    seen.append(event["state"])
            return seen

        # The subscription takes a moment to reach the broker: submit until events flow.
        probe = wait_for(lambda: events_for(c.submit("echo", 0).id) or None, 10, "events to flow", every=0.05)
        assert probe
        seen.clear()
        t = c.submit("flaky", {"succeed_on": 2})
        wait_for(lambda: "complete" in events_for(t.id), 10, "the complete event")
        assert seen == ["new", "active", "retry", "active", "complete"]
    finally:
        sub.close(0)
        ctx.term()


def test_load_results_hands_parents_results_to_the_handler(c: Client, worker: Proc) -> None:
    a = c.submit("echo", {"a": 1})
    b = c.submit("echo", [2, 3])
    child = c.submit("parents", None, depends_on=[a.id, b.id], load_results=True)
    info = c.wait(child.id, timeout=20)
    assert info.result == {a.id: {"a": 1}, b.id: [2, 3]}
