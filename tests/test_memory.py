"""Broker memory follows what is held now, not what went through: a real broker drains 200,000
tasks past one task that holds its lease for an hour, and its RSS stays flat."""

from __future__ import annotations

from pathlib import Path

import psutil  # type: ignore[import-untyped]
import pytest

from tests.harness import BrokerHandle, Proc, events, start_worker, wait_for

APP = "tests.apps.basic:router"
TOTAL = 200_000
BATCH = 5_000
FLAT_MB = 20


def _rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


@pytest.mark.timeout(240)
def test_broker_rss_stays_flat_while_200k_tasks_pass_one_long_lease(
    broker: BrokerHandle, tmp_path: Path, procs: list[Proc]
) -> None:
    # Given one task running for the whole test under a 1 h lease, and a worker for the rest.
    c = broker.client(timeout=30)
    c.configure_queue("long", max_run_time=3600)
    c.configure_queue("Q", max_concurrent=1000)
    procs.append(start_worker(broker, tmp_path, APP, queues=("long",)))
    c.submit("sleep", {"s": 3600}, queue="long")
    wait_for(lambda: len(events(tmp_path)) == 1, 10, "the long task to start")
    procs.append(start_worker(broker, tmp_path, APP, procs=2, queues=("Q",)))
    # When 200,000 short tasks are submitted and done, a batch at a time,
    done = 0
    baseline = 0.0
    for n in range(TOTAL // BATCH):
        c.submit_many([("echo", None)] * BATCH, queue="Q")
        done += BATCH
        wait_for(lambda n=done: c.queue_info("Q").counts.get("complete", 0) == n, 60, f"{done} tasks done")
        if n == 3:  # warmed up: SQLite's page cache and the interpreter's pools are full by now
            baseline = _rss_mb(broker.proc.pid)
    # Then the broker's RSS grew by less than 20 MB from the first 20,000 to the last.
    grown = _rss_mb(broker.proc.pid) - baseline
    print(f"broker RSS: {baseline:.1f} MB after 20,000 tasks, +{grown:.1f} MB after {TOTAL:,} (one 1 h lease held)")
    assert grown < FLAT_MB
    assert c.queue_info("long").counts.get("active") == 1
