"""Push, not poll: an idle broker and worker use almost no CPU, and so does a worker with no broker."""

from __future__ import annotations

import threading
from pathlib import Path

import psutil
import pytest

from tests.harness import BrokerHandle, Proc, free_port, start_worker, wait_for

APP = "tests.apps.basic:router"


def cpu_seconds_over(pids: list[int], window_s: float) -> float:
    """CPU seconds the processes (and their children) use during `window_s`."""
    procs = [psutil.Process(p) for p in pids]
    procs += [c for p in list(procs) for c in p.children(recursive=True)]

    def total() -> float:
        return sum(sum(p.cpu_times()[:2]) for p in procs)

    before = total()
    threading.Event().wait(window_s)  # a measurement window, not a wait for something to happen
    return total() - before


@pytest.mark.timeout(60)
def test_idle_broker_and_worker_use_almost_no_cpu(broker: BrokerHandle, tmp_path: Path, procs: list[Proc]) -> None:
    w = start_worker(broker, tmp_path, APP, procs=2)
    procs.append(w)
    c = broker.client()
    assert c.wait(c.submit("echo", 1).id, timeout=20).state == "complete"
    used = cpu_seconds_over([broker.proc.pid, w.pid], 2.0)
    print(f"idle: {used * 1000:.0f} ms CPU in 2 s for a broker and a 2-process worker")
    assert used < 0.2


@pytest.mark.timeout(60)
def test_worker_without_a_broker_does_not_spin(tmp_path: Path, procs: list[Proc]) -> None:
    args = ["-m", "ajq.worker", "--broker", f"tcp://127.0.0.1:{free_port()}", "--procs", "1", APP]
    w = Proc(args, tmp_path / "lonely.log", tmp_path).start()
    procs.append(w)
    wait_for(lambda: len(psutil.Process(w.pid).children()) == 1, 15, "the pool to fork")
    used = cpu_seconds_over([w.pid], 2.0)
    print(f"no broker: {used * 1000:.0f} ms CPU in 2 s")
    assert used < 0.2
