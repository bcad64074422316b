"""A full disk: submits are refused clearly, reads go on, results wait in the worker (resent with a
back-off, not in a tight loop) and are written once space returns, without a restart."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from ajq import ClientError
from tests.faults.ledger import count, finals, runs
from tests.harness import Proc, start_broker, start_worker, wait_for

APP = "tests.apps.faults:router"


@pytest.mark.timeout(120)
def test_a_database_at_its_size_cap_refuses_clearly_loses_nothing_and_recovers(tmp_path: Path) -> None:
    # Given a broker whose database may not grow past 2 MB (SQLite answers as on a full disk).
    broker = start_broker(tmp_path, "--max-db-mb", "2")
    try:
        c = broker.client()
        acked: list[str] = []
        # When tasks are submitted until the broker refuses,
        with pytest.raises(ClientError, match="free disk space") as refusal:
            for _ in range(1000):
                acked += c.submit_many([("fill", {"blob": "x" * 2000})] * 50, queue="FULL")
        # Then the refusal is a clear error, every acknowledged task is there, and reads still work.
        stored = {t.id for t in c.tasks(queue="FULL", limit=1000)}
        print(f"full database: acknowledged={len(acked)} refusal={refusal.value}")
        assert set(acked) <= stored and len(stored) == len(acked) > 0
        # And once space is freed, it takes tasks again.
        assert c.purge_queue("FULL") == len(acked)
        assert c.submit("fill", {"small": True}, queue="FULL").id
    finally:
        broker.close()


@contextlib.contextmanager
def small_disk(path: Path, mb: int) -> Iterator[Path]:
    """A tmpfs of `mb` MB mounted at `path` (root and mount rights needed: else the test skips)."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mb}m", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(
            f"cannot mount a small tmpfs here ({mounted.stderr.decode().strip()}): needs root and CAP_SYS_ADMIN"
        )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(path: Path) -> None:
    """Write `path` until the filesystem is full."""
    with path.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 512)


@pytest.mark.timeout(120)
def test_a_full_disk_keeps_results_in_the_worker_and_writes_them_when_space_returns(
    tmp_path: Path, procs: list[Proc]
) -> None:
    # Given a broker whose database is on a 16 MB filesystem, and a worker running two of six tasks
    # of 1 s, each with a result of 64 KB.
    with small_disk(tmp_path / "disk", 16) as disk:
        broker = start_broker(tmp_path, db=disk / "ajq.db")
        try:
            c = broker.client()
            c.configure_queue("R", max_run_time=60)
            worker = start_worker(broker, tmp_path, APP, procs=2, queues=("R",))
            procs.append(worker)
            ids = c.submit_many([("work", {"s": 1.0, "result_kb": 64}) for _ in range(6)], queue="R")
            wait_for(lambda: len(runs(tmp_path)) == 2, 20, "two tasks to start")
            # When the disk fills up before they end: submits are refused with what to do.
            _fill(disk / "ballast")
            with pytest.raises(ClientError, match="free disk space"):
                c.submit("more", None, queue="R")
            full_at = time.time()
            # Then for 2 s the broker still answers reads, and the worker resends its results with a
            # back-off: it uses almost no CPU (a tight resend loop would use all of one).
            supervisor = psutil.Process(worker.pid)
            cpu = sum(supervisor.cpu_times()[:2])
            reads = 0
            while time.time() < full_at + 2.0:
                assert c.get(ids[0]).state == "active"
                reads += 1
            cpu = sum(supervisor.cpu_times()[:2]) - cpu
            assert len([r for r in runs(tmp_path) if r.ended]) >= 2  # their results were refused meanwhile
            assert c.queue_info("R").counts.get("complete", 0) == 0
            # And once space returns, without a restart, every result is written and every task runs.
            os.unlink(disk / "ballast")
            done = [c.wait(i, timeout=60) for i in ids]
            figures = count("disk-full", "the disk full while results arrive", ids, finals(done, "complete"),
                            runs(tmp_path), recovery_s=time.time() - full_at)  # fmt: skip
            figures.report()
            print(f"disk full: {reads} reads answered while full, worker CPU {cpu:.2f}s in 2 s")
            assert (figures.lost, figures.unexpected, figures.overlap, figures.duplicated) == (0, 0, 0, 0)
            assert cpu < 0.5
        finally:
            broker.close()
