"""The broker SIGKILLed mid-burst and mid-lease, restarted on the same file: nothing acknowledged
is lost or doubled, and a cancel acknowledged before the kill holds."""

from __future__ import annotations

import random
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.faults.ledger import Figures, all_tasks, count, finals, runs
from tests.harness import BrokerHandle, Proc, start_worker, wait_for

APP = "tests.apps.faults:router"


def _acked(outs: list[Path]) -> list[str]:
    return [i for out in outs if out.exists() for i in out.read_text().split()]


def _sigkill(broker: BrokerHandle) -> float:
    broker.proc.signal(signal.SIGKILL)
    broker.proc.wait(10)
    return time.time()


@pytest.mark.timeout(180)
def test_broker_sigkilled_in_a_burst_from_four_clients_keeps_each_acknowledged_task_once(
    broker: BrokerHandle, tmp_path: Path, procs: list[Proc]
) -> None:
    # Given 4 client processes submitting 2,500 tasks each in batches of 50, resending a batch under
    # the same ids until it is acknowledged.
    outs = [tmp_path / f"acked-{n}.txt" for n in range(4)]
    args = [["-m", "tests.faults.submitter", broker.endpoint, f"c{n}", "2500", "50", str(outs[n])] for n in range(4)]
    procs += [Proc(a, tmp_path / f"client{n}.log", tmp_path).start() for n, a in enumerate(args)]
    # When the broker is SIGKILLed at a random moment of the burst and restarted on the same file.
    moment = random.randint(500, 8_000)
    wait_for(lambda: len(_acked(outs)) >= moment, 90, f"{moment} acknowledged tasks")
    at_kill = len(_acked(outs))
    killed = _sigkill(broker)
    broker.proc.start()
    broker.ready()
    recovery = time.time() - killed  # until the restarted broker answers
    for p in procs:
        assert p.wait(120) == 0, p.tail()
    # Then every acknowledged task is stored exactly once, nothing else is, and the file is sound.
    acked = _acked(outs)
    stored = Counter(t.id for t in all_tasks(broker.client(), "BURST"))
    expected = {f"c{n}-{i}" for n in range(4) for i in range(2500)}
    figures = Figures(
        "broker-sigkill-burst", f"SIGKILL the broker after {at_kill} of 10,000 submits",
        len(acked), len(set(acked) - set(stored)), sum(n - 1 for n in stored.values()), 0,
        len(set(stored) - expected), recovery,
    )  # fmt: skip
    figures.report()
    assert (figures.acknowledged, figures.lost, figures.duplicated, figures.unexpected) == (10_000, 0, 0, 0)
    with sqlite3.connect(broker.db) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.timeout(120)
def test_broker_sigkilled_while_workers_hold_leases_loses_nothing_and_keeps_a_cancel(
    broker: BrokerHandle, tmp_path: Path, procs: list[Proc]
) -> None:
    # Given a worker of 2 processes working through 20 tasks of 0.3 s, and a long task on another.
    c = broker.client()
    c.configure_queue("L", max_run_time=60)
    c.configure_queue("LONG", max_run_time=60)
    procs.append(start_worker(broker, tmp_path, APP, procs=2, queues=("L",)))
    procs.append(start_worker(broker, tmp_path, APP, queues=("LONG",)))
    long = c.submit("work", {"s": 30}, queue="LONG")
    ids = c.submit_many([("work", {"s": 0.3}) for _ in range(20)], queue="L")
    wait_for(lambda: {r.task_id for r in runs(tmp_path)} >= {long.id, ids[0]}, 20, "both workers to be running")
    # When the long task's cancel is acknowledged and the broker is SIGKILLed at once, then restarted.
    c.cancel(long.id, wait=0)
    killed = _sigkill(broker)
    broker.proc.start()
    broker.ready()
    c = broker.client()
    done = [c.wait(i, timeout=60) for i in ids]
    after = [d.finished_at.timestamp() for d in done if d.finished_at and d.finished_at.timestamp() > killed]
    cancelled = c.wait(long.id, timeout=30)
    ran = runs(tmp_path)
    figures = count("broker-sigkill-leases", "SIGKILL the broker while 3 leases are held", [*ids, long.id],
                    {**finals(done, "complete"), **finals([cancelled], "terminated")}, ran,
                    recovery_s=min(after) - killed)  # fmt: skip
    figures.report()
    # Then nothing is lost, nothing overlaps, and the cancel held: the long task never ran to its end.
    assert (figures.lost, figures.unexpected, figures.overlap) == (0, 0, 0)
    assert cancelled.state == "terminated"
    assert not any(r.ended for r in ran if r.task_id == long.id)
