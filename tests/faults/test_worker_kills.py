"""Workers under SIGKILL and SIGSTOP: every acknowledged task ends once, no two runs at once.

Heartbeat 0.2 s (tests/harness.py), so the lease bound is 0.6 s and the broker takes a silent
worker's tasks back 1.6 s after its last message (SPEC 6.1)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from ajq import TaskInfo
from tests.faults.ledger import Run, count, finals, peak, runs
from tests.harness import BrokerHandle, Proc, gone, start_worker, wait_for

APP = "tests.apps.faults:router"
BOUND_S, MARGIN_S = 0.6, 1.0


def _running(test_dir: Path, pids: set[int], skip: set[int]) -> Run | None:
    """A run in progress in one of `pids` (not yet ended, not one we killed)."""
    for run in runs(test_dir):
        if not run.ended and run.pid in pids and run.pid not in skip:
            return run
    return None


def _reported(info: TaskInfo, run: Run) -> bool:
    """The broker has taken the try back (its lease would have lasted a minute)."""
    return info.state != "active" or info.tries > run.try_number


def _children(proc: Proc) -> set[int]:
    return {p.pid for p in psutil.Process(proc.pid).children()}


@pytest.mark.timeout(120)
def test_busy_children_killed_ten_times_lose_nothing_and_are_reported_at_once(
    broker: BrokerHandle, tmp_path: Path, procs: list[Proc]
) -> None:
    # Given 200 tasks of 0.2 s on a worker of 4 processes, with leases of a minute.
    c = broker.client()
    c.configure_queue("K", max_run_time=60)
    worker = start_worker(broker, tmp_path, APP, procs=4, queues=("K",))
    procs.append(worker)
    ids = c.submit_many([("work", {"s": 0.2}) for _ in range(200)], queue="K")
    # When a busy child is SIGKILLed, ten times.
    killed: list[Run] = []
    reported: list[float] = []
    for _ in range(10):
        skip = {r.pid for r in killed}
        run = wait_for(lambda: _running(tmp_path, _children(worker), skip), 20, "a busy child")  # noqa: B023
        os.kill(run.pid, signal.SIGKILL)
        at = time.monotonic()
        killed.append(run)
        # Then the killed try is reported at once: the broker no longer holds it as that lease.
        wait_for(lambda: _reported(c.get(run.task_id), run), 5, "the killed try to be reported")  # noqa: B023
        reported.append(time.monotonic() - at)
    done = [c.wait(i, timeout=60) for i in ids]
    ran = runs(tmp_path)
    figures = count("child-sigkill", "SIGKILL a busy child x10", ids, finals(done, "complete"), ran,
                    recovery_s=max(reported))  # fmt: skip
    figures.report()
    assert (figures.lost, figures.unexpected, figures.overlap) == (0, 0, 0)
    assert sorted(d.tries for d in done if d.id in {k.task_id for k in killed}) == [2] * 10
    # And the pool is full again.
    wait_for(lambda: len(_children(worker)) == 4, 10, "four children again")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("whole", [True, False], ids=["whole-worker", "supervisor-only"])
def test_a_killed_worker_loses_nothing_and_its_children_stop_within_the_bound(
    broker: BrokerHandle, tmp_path: Path, procs: list[Proc], whole: bool
) -> None:
    # Given worker A running 2 tasks of 1.5 s with leases of a minute, and an idle worker B.
    c = broker.client()
    c.configure_queue("W", max_run_time=60)
    a = start_worker(broker, tmp_path, APP, procs=2, queues=("W",))
    procs.append(a)
    ids = c.submit_many([("work", {"s": 1.5}) for _ in range(2)], queue="W")
    wait_for(lambda: len([r for r in runs(tmp_path) if not r.ended]) == 2, 20, "A to run two tasks")
    children = _children(a)
    b = start_worker(broker, tmp_path, APP, procs=2, queues=("W",))
    procs.append(b)
    # When A's supervisor (and, for a whole worker, its children) is SIGKILLed.
    killed_at = time.time()
    for pid in [a.pid, *children] if whole else [a.pid]:
        os.kill(pid, signal.SIGKILL)
    a.wait(10)
    # Then A's children are gone within the lease bound, before the broker gives their tasks out.
    wait_for(lambda: all(gone(p) for p in children), 5, "A's children to stop")
    stopped_s = time.time() - killed_at
    done = [c.wait(i, timeout=60) for i in ids]
    ran = runs(tmp_path)
    cut = [r for r in ran if r.pid in children and not r.ended]
    again = min(r.start for r in ran if r.task_id in {x.task_id for x in cut} and r.pid not in children)
    figures = count(f"worker-sigkill-{'whole' if whole else 'supervisor'}",
                    "SIGKILL a whole worker" if whole else "SIGKILL only the supervisor",
                    ids, finals(done, "complete"), ran, recovery_s=again - killed_at)  # fmt: skip
    figures.report()
    print(f"children stopped {stopped_s:.2f}s after the kill")
    assert (figures.lost, figures.unexpected, figures.overlap) == (0, 0, 0)
    assert len(cut) == 2 and stopped_s < BOUND_S + MARGIN_S
    assert again - killed_at >= BOUND_S  # the broker waited for the bound before giving them out


@pytest.mark.timeout(120)
def test_a_supervisor_frozen_past_the_bound_never_overlaps_with_max_concurrent_one(
    broker: BrokerHandle, tmp_path: Path, procs: list[Proc]
) -> None:
    # Given a queue of max_concurrent 1: worker A runs its task (ticking), worker B waits.
    c = broker.client()
    c.configure_queue("ONE", max_run_time=60, max_concurrent=1)
    a = start_worker(broker, tmp_path, APP, queues=("ONE",))
    procs.append(a)
    ids = c.submit_many([("work", {"s": 2.0})] + [("work", {"s": 0.05}) for _ in range(5)], queue="ONE")
    wait_for(lambda: runs(tmp_path), 20, "A's task to start")
    b = start_worker(broker, tmp_path, APP, queues=("ONE",))
    procs.append(b)
    a_children = _children(a)
    # When A's supervisor is frozen (SIGSTOP) until B has run A's task, then thawed.
    frozen_at = time.time()
    a.signal(signal.SIGSTOP)
    b_children = _children(b)
    wait_for(lambda: any(r.pid in b_children and r.task_id == ids[0] for r in runs(tmp_path)), 20, "B to take it")
    a.signal(signal.SIGCONT)
    done = [c.wait(i, timeout=60) for i in ids]
    ran = runs(tmp_path)
    again = min(r.start for r in ran if r.task_id == ids[0] and r.pid in b_children)
    figures = count("supervisor-sigstop", "SIGSTOP the supervisor past the bound, max_concurrent=1",
                    ids, finals(done, "complete"), ran, recovery_s=again - frozen_at)  # fmt: skip
    figures.report()
    # Then no two handlers of the queue ever ran at once, and every task ended once.
    assert (figures.lost, figures.unexpected, figures.overlap, figures.duplicated) == (0, 0, 0, 0)
    assert peak(ran) == 1
    assert not any(r.ended for r in ran if r.pid in a_children and r.task_id == ids[0])
