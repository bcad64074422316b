"""A nemesis soak: for --soak seconds (60 in CI) random faults hit a running cluster while four
clients submit: the broker SIGKILLed and restarted, busy children SIGKILLed, a worker's supervisor
frozen until the broker drops it and then thawed, a client SIGKILLed mid-batch and started again
(it resends under the same ids). Then every acknowledged task must complete: lost 0, unexpected 0,
no two runs of one task at once, and never more than max_concurrent runs of the queue at once."""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from ajq import Client, ClientError, TaskInfo
from tests.faults.ledger import count, peak, runs
from tests.harness import BrokerHandle, Proc, registered, start_worker, wait_for

APP = "tests.apps.faults:router"
LIMIT = 3
RATE = 10  # tasks a second from each of the 4 clients, for the whole soak: 40/s against ~60/s drained


def _submitter(broker: BrokerHandle, tmp: Path, n: int, count: int) -> Proc:
    out = str(tmp / f"acked-{n}.txt")
    args = ["-m", "tests.faults.submitter", broker.endpoint, f"n{n}", str(count), "10", out, "NEM", "0.05", "1"]
    return Proc(args, tmp / f"client{n}.log", tmp).start()


def _acked(tmp: Path) -> set[str]:
    return {i for path in tmp.glob("acked-*.txt") for i in path.read_text().split()}


def _busy_child(workers: list[Proc], tmp: Path, rng: random.Random) -> int | None:
    pids = {c.pid for w in workers if w.alive() for c in psutil.Process(w.pid).children()}
    busy = [r.pid for r in runs(tmp) if not r.ended and r.pid in pids]
    return rng.choice(busy) if busy else None


def _final(c: Client, ids: set[str]) -> dict[str, TaskInfo]:
    """Each task's state, read through broker restarts (a call that times out is asked again)."""
    out: dict[str, TaskInfo] = {}
    for task_id in sorted(ids):
        while task_id not in out:
            try:
                out[task_id] = c.wait(task_id, timeout=30)
            except ClientError:
                continue
    return out


@pytest.mark.timeout(600)
def test_random_faults_lose_nothing_overlap_nothing_and_hold_the_limit(
    broker: BrokerHandle, tmp_path: Path, procs: list[Proc], soak_s: float
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    c = broker.client(timeout=2)
    c.configure_queue("NEM", max_concurrent=LIMIT, max_run_time=30, backoff=0.2)
    workers = [start_worker(broker, tmp_path, APP, procs=2, queues=("NEM",)) for _ in range(3)]
    procs += workers
    per_client = int(soak_s * RATE)
    clients = {n: _submitter(broker, tmp_path, n, per_client) for n in range(4)}
    procs += clients.values()
    faults: Counter[str] = Counter()
    recoveries: list[float] = []
    deadline = time.monotonic() + soak_s
    while time.monotonic() < deadline and any(p.alive() for p in clients.values()):
        # Pace by progress, not by the clock: the next fault comes after a few more runs.
        started = len(runs(tmp_path))
        wait_for(lambda: len(runs(tmp_path)) >= started + rng.randint(3, 15), 60, "the cluster to make progress")  # noqa: B023
        fault = rng.choice(["broker", "child", "freeze", "client"])
        faults[fault] += 1
        if fault == "broker":
            broker.proc.signal(signal.SIGKILL)
            broker.proc.wait(10)
            killed_at, before = time.time(), len(runs(tmp_path))
            broker.proc.start()
            broker.ready()
            wait_for(lambda: len(runs(tmp_path)) > before, 60, "a run after the restart")  # noqa: B023
            recoveries.append(time.time() - killed_at)
        elif fault == "child" and (pid := _busy_child(workers, tmp_path, rng)) is not None:
            os.kill(pid, signal.SIGKILL)
        elif fault == "freeze":
            w = rng.choice(workers)
            w.signal(signal.SIGSTOP)
            wait_for(lambda: not registered(c, w.pid), 30, "the broker to drop the frozen worker")  # noqa: B023
            w.signal(signal.SIGCONT)
        elif fault == "client":
            n = rng.choice([n for n, p in clients.items() if p.alive()] or [0])
            clients[n].kill()
            clients[n] = _submitter(broker, tmp_path, n, per_client)  # it resends its batches under the same ids
            procs.append(clients[n])
    for p in clients.values():
        assert p.wait(300) == 0, p.tail()
    acked = _acked(tmp_path)
    final = _final(c, acked)
    ran = runs(tmp_path)
    figures = count("nemesis", f"{soak_s:g}s: " + ", ".join(f"{k} x{v}" for k, v in sorted(faults.items())), acked,
                    {t: (i.finished_at.timestamp() if i.state == "complete" and i.finished_at else None)
                     for t, i in final.items()},
                    ran, recovery_s=max(recoveries, default=None))  # fmt: skip
    figures.report()
    runs_per_task = len(ran) / max(1, len(acked))
    print(f"nemesis seed {seed}: {len(ran)} runs of {len(acked)} tasks ({runs_per_task:.3f} a task), peak {peak(ran)}")
    assert len(acked) == 4 * per_client
    assert (figures.lost, figures.unexpected, figures.overlap) == (0, 0, 0)
    assert peak(ran) <= LIMIT
