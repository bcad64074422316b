"""Issue 3's figures: weighted queue shares, delayed-start lateness, a 100-link dependency chain,
and how fast a lost worker's task runs again."""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass

from ajq import Client
from bench.procs import Cluster, LoadMeter, poll_until
from bench.report import LOAD, Run, percentile

WEIGHTS = {"critical": 6, "default": 3, "low": 1}


@dataclass(frozen=True)
class FlowSizes:
    weighted: int = 1_000  # tasks per queue; shares are read once this many are done in all
    delayed: int = 50  # delayed tasks, one at a time
    delay_s: float = 0.1
    chain: int = 100  # links
    cancels: int = 20  # running tasks cancelled, one at a time


FLOW_FULL = FlowSizes()
FLOW_QUICK = FlowSizes(weighted=300, delayed=10, chain=20, cancels=5)


def bench_weighted(sizes: FlowSizes) -> Run:
    """Shares of three queues weighted 6/3/1 over the first `weighted` tasks done, in %."""
    n = sizes.weighted
    with Cluster() as cluster, cluster.client() as c:
        for q in WEIGHTS:  # twice what is measured: no queue may run dry before the count is read
            c.configure_queue(q, max_concurrent=10_000)
            c.submit_many([("noop", None)] * 2 * n, queue=q)
        extra = tuple(arg for q, w in list(WEIGHTS.items())[1:] for arg in ("--queue", f"{q}={w}"))
        worker = cluster.start_worker(f"critical={WEIGHTS['critical']}", 2, extra=extra)
        cluster.wait_registered(c, "critical", worker)
        snapshots: list[dict[str, int]] = []
        poll_until(lambda: _done(c, snapshots) >= n, 60 + n / 100, f"{n} weighted tasks done", 0.005)
        done = snapshots[-1]
    total = sum(done.values())
    shares = {q: 100 * k / total for q, k in done.items()}
    ideal = {q: 100 * w / sum(WEIGHTS.values()) for q, w in WEIGHTS.items()}
    return {
        "share_critical": shares["critical"],
        "share_default": shares["default"],
        "share_low": shares["low"],
        "share_off": max(abs(shares[q] - ideal[q]) for q in WEIGHTS),
    }


def _done(c: Client, snapshots: list[dict[str, int]]) -> int:
    """Tasks done in the weighted queues, from one consistent snapshot (kept for the shares)."""
    snapshots.append({q.name: q.counts.get("complete", 0) for q in c.queues() if q.name in WEIGHTS})
    return sum(snapshots[-1].values())


def bench_delayed(sizes: FlowSizes) -> Run:
    """How late delayed tasks start after their run_at, one at a time on an idle worker, in ms."""
    q = "bench-delayed"
    with Cluster() as cluster, cluster.client() as c:
        c.configure_queue(q)
        cluster.wait_registered(c, q, cluster.start_worker(q, 2))
        meter = LoadMeter(cluster)
        meter.start()
        late = [_lateness(c, q, sizes.delay_s) for _ in range(sizes.delayed)]
        load = meter.stop()
    return {"delayed_p50": percentile(late, 50), "delayed_p99": percentile(late, 99), LOAD: load}


def _lateness(c: Client, queue: str, delay_s: float) -> float:
    run_at = time.time() + delay_s
    t = c.submit("stamp", None, queue=queue, run_at=run_at)
    info = c.wait(t.id, timeout=10 + delay_s)
    return float((info.result["start"] - run_at) * 1000)


def bench_chain(sizes: FlowSizes) -> Run:
    """A chain of tasks, each depending on the one before: ms per link, first start to last end."""
    q = "bench-chain"
    with Cluster() as cluster, cluster.client() as c:
        c.configure_queue(q)
        cluster.wait_registered(c, q, cluster.start_worker(q, 2))
        c.configure_queue(q)
        c.pause_queue(q)  # queue the whole chain first, then let it run
        ids: list[str] = []
        for _ in range(sizes.chain):
            ids.append(c.submit("noop", None, queue=q, depends_on=ids[-1:]).id)
        c.resume_queue(q)
        last = c.wait(ids[-1], timeout=60)
        first = c.get(ids[0])
    if last.finished_at is None or first.started_at is None:
        raise RuntimeError(f"chain ended {last.state}: {last.last_error}")
    span = (last.finished_at - first.started_at).total_seconds()
    return {"chain_total_ms": span * 1000, "chain_link_ms": span * 1000 / sizes.chain}


def bench_lost(sizes: FlowSizes) -> Run:
    """A worker SIGKILLed mid-task (1 h lease): seconds until its task runs again elsewhere."""
    q = "bench-lost"
    with Cluster() as cluster, cluster.client() as c:
        c.configure_queue(q, max_run_time=3600)
        first = cluster.start_worker(q, 1)
        cluster.wait_registered(c, q, first)
        t = c.submit("hold", {"s": 3600}, queue=q)
        poll_until(lambda: c.get(t.id).state == "active", 10, "the task to start", 0.005)
        cluster.wait_registered(c, q, cluster.start_worker(q, 1), n=2)
        lost_at = time.time()
        first.popen.send_signal(signal.SIGKILL)
        info = c.wait(t.id, timeout=60)
    if info.state != "complete" or info.started_at is None:
        raise RuntimeError(f"the task ended {info.state}: {info.last_error}")
    return {"lost_recovery_s": info.started_at.timestamp() - lost_at}


def bench_cancel(sizes: FlowSizes) -> Run:
    """A running task cancelled: ms from the request until the client sees it terminated."""
    q = "bench-cancel"
    with Cluster() as cluster, cluster.client() as c:
        c.configure_queue(q)
        cluster.wait_registered(c, q, cluster.start_worker(q, 2))
        samples = [_cancel_ms(c, q) for _ in range(sizes.cancels)]
    return {"cancel_p50": percentile(samples, 50), "cancel_max": max(samples)}


def _cancel_ms(c: Client, queue: str) -> float:
    t = c.submit("hold", {"s": 3600}, queue=queue)
    poll_until(lambda: c.get(t.id).state == "active", 10, "the task to start", 0.002)
    started = time.perf_counter()
    info = c.cancel(t.id, wait=10)
    if info.state != "terminated":
        raise RuntimeError(f"cancelled task ended {info.state}")
    return (time.perf_counter() - started) * 1000
