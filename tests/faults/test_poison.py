"""Tasks that never finish or kill what runs them: exactly max_tries runs, then `dead` with the
reason, and a task that fells its whole worker backs off between tries instead of retrying at once."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tests.faults.ledger import count, finals, runs
from tests.harness import BrokerHandle, Proc, start_worker, wait_for

APP = "tests.apps.faults:router"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("task_type", "why"),
    [("hang", "hard timeout"), ("poison_child", "the process running the task died")],
    ids=["hung-handler", "kills-its-process"],
)
def test_a_task_that_never_ends_or_kills_its_process_runs_max_tries_then_is_dead(
    broker: BrokerHandle, tmp_path: Path, procs: list[Proc], task_type: str, why: str
) -> None:
    # Given a queue of 3 tries of 0.3 s each, and a worker.
    c = broker.client()
    c.configure_queue("P", max_run_time=0.3, max_tries=3)
    procs.append(start_worker(broker, tmp_path, APP, procs=2, queues=("P",)))
    # When a task that hangs (or kills its own process) is submitted.
    t = c.submit(task_type, None, queue="P")
    info = c.wait(t.id, timeout=30)
    ran = runs(tmp_path)
    figures = count(f"poison-{task_type}", f"{task_type} every try", [t.id], finals([info], "dead"), ran)
    figures.report()
    # Then it ran exactly 3 times, one after another, and is dead with the reason.
    assert (info.state, info.tries, len(ran)) == ("dead", 3, 3)
    assert why in (info.last_error or "")
    assert (figures.lost, figures.unexpected, figures.overlap) == (0, 0, 0)


@pytest.mark.timeout(90)
def test_a_task_that_kills_its_whole_worker_backs_off_between_tries(
    broker: BrokerHandle, tmp_path: Path, procs: list[Proc]
) -> None:
    # Given a queue of 3 tries whose unanswered tries back off 1 s, then 2 s, and a worker that is
    # started again whenever it dies (as systemd would).
    c = broker.client()
    c.configure_queue("PW", max_tries=3, backoff=1.0)
    t = c.submit("poison_worker", None, queue="PW")
    for n in range(1, 4):
        worker = start_worker(broker, tmp_path, APP, queues=("PW",))
        procs.append(worker)
        # When each try kills the worker running it.
        wait_for(lambda: len(runs(tmp_path)) == n, 20, f"try {n} to start")  # noqa: B023
        worker.wait(10)
    info = c.wait(t.id, timeout=30)
    starts = [r.start for r in runs(tmp_path)]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    figures = count("poison-worker", "kills its whole worker every try", [t.id], finals([info], "dead"), runs(tmp_path))
    figures.report()
    print(f"poison worker: gaps between tries {', '.join(f'{g:.2f}s' for g in gaps)}")
    # Then it ran exactly 3 times and is dead, and each retry waited the lease bound and its backoff.
    assert (info.state, info.tries, len(starts)) == ("dead", 3, 3)
    assert gaps[0] >= 0.6 + 1.0 and gaps[1] >= 0.6 + 2.0
    assert (figures.lost, figures.unexpected, figures.overlap) == (0, 0, 0)
