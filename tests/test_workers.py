"""Queue priority and worker liveness with real processes: weighted and strict shares, a killed
worker's tasks going back, a silent worker's children stopping within the lease bound, and a worker
that outlives a broker restart."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from ajq import Client
from tests.harness import BrokerHandle, Proc, events, gone, start_worker, wait_for

APP = "tests.apps.basic:router"


def complete(c: Client, queue: str) -> int:
    return c.queue_info(queue).counts.get("complete", 0)


def completed(c: Client, queues: tuple[str, ...], at_least: int) -> dict[str, int] | None:
    """Complete tasks per queue from one snapshot (one request, answered in one broker step),
    once they add up to `at_least`; reading queue by queue would favour the last one read."""
    done = {q.name: q.counts.get("complete", 0) for q in c.queues() if q.name in queues}
    return done if sum(done.values()) >= at_least else None


@pytest.mark.timeout(120)
def test_weighted_queues_share_by_weight(broker: BrokerHandle, tmp_path: Path, procs: list[Proc]) -> None:
    # Given 1,000 tasks in each of three queues, When a worker weighs them 6/3/1,
    c = broker.client()
    for q in ("critical", "default", "low"):
        c.submit_many([("echo", i) for i in range(1000)], queue=q)
    weighted = ("critical=6", "default=3", "low=1")
    procs.append(start_worker(broker, tmp_path, APP, procs=2, queues=weighted))
    # Then over the first 1,000 tasks done, they get 60/30/10 % within a few percent.
    names = ("critical", "default", "low")
    done = wait_for(lambda: completed(c, names, 1000), 60, "1,000 tasks")
    total = sum(done.values())
    shares = {q: round(100 * n / total, 1) for q, n in done.items()}
    print(f"weighted 6/3/1 over {total} tasks: {shares}")
    assert abs(shares["critical"] - 60) <= 3 and abs(shares["default"] - 30) <= 3 and abs(shares["low"] - 10) <= 3


@pytest.mark.timeout(120)
def test_strict_priority_serves_a_lower_queue_only_when_higher_is_empty(
    broker: BrokerHandle, tmp_path: Path, procs: list[Proc]
) -> None:
    # (A queue at its max_concurrent counts as unavailable, like a paused one: lift it here.)
    c = broker.client()
    for q in ("high", "low"):
        c.configure_queue(q, max_concurrent=1000)
    high = c.submit_many([("echo", i) for i in range(200)], queue="high")
    low = c.submit_many([("echo", i) for i in range(200)], queue="low")
    procs.append(start_worker(broker, tmp_path, APP, procs=2, queues=("high", "low"), extra=["--strict"]))
    wait_for(lambda: complete(c, "low") == 200, 60, "all tasks")
    last_high = max(c.get(i).started_at for i in high[-20:])  # type: ignore[type-var]
    first_low = min(c.get(i).started_at for i in low[:20])  # type: ignore[type-var]
    assert first_low >= last_high


@pytest.mark.timeout(60)
def test_a_killed_worker_hands_its_tasks_back_at_once(broker: BrokerHandle, tmp_path: Path, procs: list[Proc]) -> None:
    # Given a task running on worker A with a 1 h lease, and an idle worker B.
    c = broker.client()
    c.configure_queue("Q", max_run_time=3600)
    a = start_worker(broker, tmp_path, APP, queues=("Q",))
    procs.append(a)
    t = c.submit("sleep", {"s": 30, "only_try": 1}, queue="Q")
    wait_for(lambda: len(events(tmp_path)) == 1, 10, "the task to start on A")
    procs.append(start_worker(broker, tmp_path, APP, queues=("Q",)))
    # When A is SIGKILLed (its connection closes), Then B runs the task once the lease bound has passed
    # (the broker cannot tell a dead worker from a cut connection), well before the lease ends.
    killed_at = time.time()
    a.kill()
    info = c.wait(t.id, timeout=20)
    recovery = info.started_at.timestamp() - killed_at  # type: ignore[union-attr]
    print(f"killed worker: task running again {recovery * 1000:.0f} ms later")
    assert (info.state, info.tries) == ("complete", 2) and recovery < 5


@pytest.mark.timeout(60)
def test_a_silent_workers_children_stop_within_the_lease_bound_before_its_task_runs_again(
    broker: BrokerHandle, tmp_path: Path, procs: list[Proc]
) -> None:
    # Given worker A running task t (max_run_time 1 h) with task u waiting in its buffer, and an idle
    # worker B; heartbeat 0.2 s, so the lease bound is 0.6 s and the broker waits 1.6 s.
    c = broker.client()
    c.configure_queue("Q", max_run_time=3600, max_concurrent=2)
    a = start_worker(broker, tmp_path, APP, queues=("Q",), extra=["--prefetch", "1"])
    procs.append(a)
    t = c.submit("sleep", {"s": 30, "only_try": 1}, queue="Q")
    wait_for(lambda: len(events(tmp_path)) == 1, 10, "t to start on A")
    u = c.submit("sleep", {"s": 0}, queue="Q")
    wait_for(lambda: c.get(u.id).state == "active", 10, "u to reach A's buffer")
    [(_, _, _, a_child)] = events(tmp_path)
    b = start_worker(broker, tmp_path, APP, queues=("Q",))
    procs.append(b)
    # When A's supervisor falls silent (stopped: no heartbeats) while its child runs on,
    lost_at = time.time()
    a.signal(signal.SIGSTOP)
    # Then A's child kills itself within the bound, before B runs the task: no two runs at once.
    wait_for(lambda: gone(a_child), 10, "A's child to stop itself")
    child_gone_at = time.time()
    info = c.wait(t.id, timeout=20)
    started = info.started_at.timestamp()  # type: ignore[union-attr]
    print(
        f"silent worker: its child stopped {(child_gone_at - lost_at) * 1000:.0f} ms after, "
        f"the task ran again {(started - lost_at) * 1000:.0f} ms after its worker went silent"
    )
    assert (info.state, info.tries) == ("complete", 2) and child_gone_at < started < lost_at + 5
    assert c.wait(u.id, timeout=20).state == "complete"
    # And when A wakes up, it registers again and drops u, which B ran: every task ran once to its end.
    a.signal(signal.SIGCONT)
    wait_for(lambda: any(w.pid == a.pid for w in c.workers()), 10, "A to register again")
    b.stop()
    v = c.submit("sleep", {"s": 0}, queue="Q")  # only A can run it, after anything left in its buffer
    assert c.wait(v.id, timeout=20).state == "complete"
    ends = [e[1] for e in events(tmp_path) if e[0] == "end"]
    assert sorted(ends.count(x) for x in (t.id, u.id)) == [1, 1]
    assert [e for e in events(tmp_path) if e[0] == "end" and e[3] == a_child] == []
    again = c.get(t.id)
    assert (again.state, again.tries, again.worker) == ("complete", 2, info.worker)


@pytest.mark.timeout(60)
def test_a_worker_keeps_its_results_across_a_broker_restart(
    broker: BrokerHandle, tmp_path: Path, procs: list[Proc]
) -> None:
    # Given a task running on a worker.
    c = broker.client()
    procs.append(start_worker(broker, tmp_path, APP))
    t = c.submit("sleep", {"s": 1.0})
    wait_for(lambda: len(events(tmp_path)) == 1, 10, "the task to start")
    # When the broker is SIGKILLed and restarted while the task runs,
    broker.restart()
    # Then the worker reconnects and reports: the task completes on its first try, run once.
    info = broker.client().wait(t.id, timeout=30)
    starts = sum(1 for e in events(tmp_path) if e[0] == "start")
    print(f"broker restart mid-task: state={info.state} tries={info.tries} runs={starts}")
    assert (info.state, info.tries, starts) == ("complete", 1, 1)


@pytest.mark.timeout(120)
def test_a_paused_queue_gives_its_share_to_the_others(broker: BrokerHandle, tmp_path: Path, procs: list[Proc]) -> None:
    # Given queues weighted 6/3/1 with the heaviest paused, Then the other two share 3:1.
    c = broker.client()
    for q in ("critical", "default", "low"):
        c.submit_many([("echo", i) for i in range(3000)], queue=q)
    c.pause_queue("critical")
    procs.append(start_worker(broker, tmp_path, APP, procs=2, queues=("critical=6", "default=3", "low=1")))
    done = wait_for(lambda: completed(c, ("critical", "default", "low"), 2000), 60, "2,000 tasks")
    share_default = 100 * done["default"] / (done["default"] + done["low"])
    print(f"critical paused: {done}, default's share {share_default:.1f} % (75 expected)")
    assert done["critical"] == 0 and abs(share_default - 75) <= 3


@pytest.mark.timeout(60)
def test_retry_policy_by_name_on_the_command_line(broker: BrokerHandle, tmp_path: Path, procs: list[Proc]) -> None:
    # Given `--retry 1m` instead of the app's 50 ms: after try 1 the delay is interval[1] = 3.95 s
    # with jitter 0.5, so 1.98 to 5.93 s.
    c = broker.client()
    c.configure_queue("R", max_tries=2)
    procs.append(start_worker(broker, tmp_path, APP, queues=("R",), extra=["--retry", "1m"]))
    f = c.submit("always_fail", None, queue="R")
    info = c.wait(f.id, timeout=20)
    assert (info.state, info.tries) == ("dead", 2)
    # Then the second try waited by the 1m policy, not the app's.
    gap = (info.finished_at - info.created_at).total_seconds()  # type: ignore[operator]
    assert 1.9 <= gap < 8
