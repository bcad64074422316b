"""The workloads, each run on one system in a fresh Stack, each ending with the exactly-once count.

Figures come from the ledger the task bodies write (bench/peers/body.py), so they are measured the
same way for every system: a task started and ended when the one body says so.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.peers import body
from bench.peers.ledger import Ended, Ledger, Tally
from bench.peers.stack import Stack
from bench.peers.systems import SYSTEMS, Submitter, System, Where
from bench.procs import _term_with_parent, poll_until
from bench.report import percentile
from bench.run import cpu_time

PROCS = 2  # worker processes in every system
STALL_S = 30.0  # a run whose ledger gains no line for this long has stopped: count what ran
CLIENT_TIMEOUT_S = 120.0  # client processes: start, connect and submit within this


@dataclass(frozen=True)
class Sizes:
    """How much work each workload does (a System with scale < 1 runs that share of the queue counts)."""

    queue: int = 20_000  # enqueued one per call, then drained
    clients: int = 8  # client processes submitting at once
    per_client: int = 1_000  # tasks each
    cpu_tasks: int = 200  # ~50 ms each
    latency: int = 200  # samples, one task at a time
    warmup: int = 10  # tasks run before a timed part, not counted in figures
    hold_s: float = 2.0  # the crash workload's task
    crash_bound_s: float = 15.0  # how long after the kill the task may take to run again


FULL = Sizes()
QUICK = Sizes(queue=2_000, per_client=100, cpu_tasks=40, latency=30, warmup=3, crash_bound_s=8.0)


@dataclass
class Outcome:
    """One run of one workload on one system: its figures and its exactly-once count."""

    figures: dict[str, Any] = field(default_factory=dict)
    tally: Tally | None = None


def scaled(n: int, system: System) -> int:
    return max(1, round(n * system.scale))


def new_ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def wait_ended(ledger: Ledger, n: int) -> bool:
    """Poll until `n` runs have ended; False once the ledger gained nothing for STALL_S."""
    seen = [-1.0, time.monotonic()]

    def progress() -> bool:
        k = ledger.poll()
        if k != seen[0]:
            seen[:] = [k, time.monotonic()]
        elif time.monotonic() - seen[1] > STALL_S:
            raise TimeoutError(f"no task ended for {STALL_S:g} s")
        return k >= n

    try:
        poll_until(progress, math.inf, f"{n} tasks ended", 0.005)
    except TimeoutError:
        return False
    return True


def finish(stack: Stack, submitted: list[str], out: Outcome) -> Outcome:
    """Stop the workers (so a late duplicate has run or never will), then count."""
    stack.stop_workers()
    out.tally = stack.ledger.tally(submitted)
    return out


def warm_up(stack: Stack, sub: Submitter, n: int) -> list[str]:
    """Start the workers, wait until ready, and run `n` stamp tasks through the whole path."""
    stack.start_workers()
    stack.wait_ready()
    warm = new_ids("w", n)
    sub.submit_all("stamp", [(b, 0.0) for b in warm])
    if not wait_ended(stack.ledger, n):
        raise RuntimeError(f"warm-up: {stack.ledger.poll()} of {n} tasks ran")
    return warm


def span(runs: list[Ended]) -> float:
    """Seconds from the first start to the last end."""
    return max(e.end for e in runs) - min(e.start for e in runs)


# -- 1 and 3: enqueue, one call per task; then drain the queue ------------------------------------


def queue(system: System, sizes: Sizes) -> Outcome:
    """Enqueue n no-ops one per call with no worker running (tasks/s), then start the workers:
    tasks/s from the first task's start to the last one's end."""
    n = scaled(sizes.queue, system)
    submitted = new_ids("q", n)
    out = Outcome({"n": n})
    with Stack(system) as stack:
        sub = system.submitter(stack.where)
        try:
            sub.submit_all("noop", [("x", 0.0)])  # connects: the first call of some clients does
            t0 = time.perf_counter()
            sub.submit_all("noop", [(b, 0.0) for b in submitted])
            out.figures["enqueue"] = n / (time.perf_counter() - t0)
        finally:
            sub.close()
        stack.start_workers()
        if wait_ended(stack.ledger, n + 1):
            out.figures["drain"] = (n + 1) / span(stack.ledger.ended)
        return finish(stack, ["x", *submitted], out)


# -- 2: 8 client processes submitting at once -----------------------------------------------------


def _client(key: str, where: Where, items: list[tuple[str, float]], start: Any, results: Any) -> None:
    """In a client process: connect, wait for the others, submit one per call; report (t0, t1)."""
    _term_with_parent()
    try:
        sub = SYSTEMS[key]().submitter(where)
        try:
            sub.submit_all("noop", items[:1])  # connects: the first call of some clients does
            start.wait(CLIENT_TIMEOUT_S)
            t0 = time.time()
            sub.submit_all("noop", items[1:])
            results.put((t0, time.time()))
        finally:
            sub.close()
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {exc}")


def clients(system: System, sizes: Sizes) -> Outcome:
    """`clients` processes submit `per_client` no-ops each, one per call, all at once, with no worker
    running: total tasks/s from the first submit to the last. Then the workers run them all."""
    k, per = sizes.clients, scaled(sizes.per_client, system)
    per += 1  # the first of each client's tasks is submitted before the clients start together
    submitted = new_ids("m", k * per)
    out = Outcome({"n": k * (per - 1)})
    ctx = mp.get_context("spawn")  # each client imports and connects on its own, as a real app would
    with Stack(system) as stack:
        start, results = ctx.Barrier(k + 1), ctx.Queue()
        items = [[(b, 0.0) for b in submitted[i * per : (i + 1) * per]] for i in range(k)]
        args = [(system.key, stack.where, chunk, start, results) for chunk in items]
        procs = [ctx.Process(target=_client, args=a) for a in args]
        try:
            for p in procs:
                p.start()
            start.wait(CLIENT_TIMEOUT_S)
            got = [results.get(timeout=CLIENT_TIMEOUT_S) for _ in procs]
        finally:
            for p in procs:
                if p.pid is not None:
                    p.join(5)
                    p.kill()
        errors = [g for g in got if isinstance(g, str)]
        if errors:
            raise RuntimeError(f"a client failed: {errors[0]}")
        out.figures["clients"] = k * (per - 1) / (max(t1 for _, t1 in got) - min(t0 for t0, _ in got))
        stack.start_workers()
        wait_ended(stack.ledger, k * per)
        return finish(stack, submitted, out)


# -- 4: CPU-bound tasks, and multiprocessing.Pool(2) as the ceiling --------------------------------


def single_cpu_s(loops: int) -> float:
    """CPU seconds of one spin(loops) here and now (the least of 7): the ideal cost of one task.

    Taken before the run's processes start, and the least rather than the median: on this shared
    2-core VM the same loop costs up to twice the CPU time while something else runs on the other
    core, which makes the ideal look larger than it is and the efficiency above 1."""
    return min(cpu_time(loops) for _ in range(7))


def cpu_figures(n: int, single: float, t0: float, submitted_at: float, runs: list[Ended]) -> dict[str, Any]:
    """Efficiency (ideal CPU time over PROCS x wall), wall, and whether submitting ended first."""
    wall = max(e.end for e in runs) - t0
    return {
        "n": n,
        "efficiency": n * single / (PROCS * wall),
        "wall_s": wall,
        "task_ms": single * 1000,
        "in_body_ms": statistics.median(e.end - e.start for e in runs) * 1000,
        "submitted_first": submitted_at < min(e.end for e in runs),
    }


def cpu(system: System, sizes: Sizes, loops: int) -> Outcome:
    """`cpu_tasks` spins of ~50 ms submitted one per call to ready workers: wall from the first
    submit to the last end, against n x (one spin's CPU time here) / PROCS."""
    n = sizes.cpu_tasks
    submitted = new_ids("c", n)
    single = single_cpu_s(loops)  # before anything of the run starts: see single_cpu_s
    with Stack(system) as stack:
        sub = system.submitter(stack.where)
        try:
            warm = warm_up(stack, sub, sizes.warmup)
            t0 = time.time()
            sub.submit_all("spin", [(b, float(loops)) for b in submitted])
            submitted_at = time.time()
        finally:
            sub.close()
        out = Outcome()
        if wait_ended(stack.ledger, len(warm) + n):
            out.figures = cpu_figures(n, single, t0, submitted_at, stack.ledger.of(set(submitted)))
        return finish(stack, warm + submitted, out)


def pool_cpu(sizes: Sizes, loops: int, tmp: Path) -> Outcome:
    """The same spins through multiprocessing.Pool(PROCS), no queue: the ceiling."""
    n = sizes.cpu_tasks
    submitted = new_ids("c", n)
    ledger = Ledger(tmp / "pool-ledger.log")
    ledger.path.unlink(missing_ok=True)  # the file of the previous repeat: its runs would count twice
    os.environ[body.LEDGER_ENV] = str(ledger.path)
    single = single_cpu_s(loops)
    with mp.get_context("fork").Pool(PROCS) as pool:
        pool.starmap(body.run, [("noop", f"w{i}", 0.0) for i in range(PROCS)])
        t0 = time.time()
        pool.starmap(body.run, [("spin", b, float(loops)) for b in submitted], chunksize=1)
    ledger.poll()
    out = Outcome(cpu_figures(n, single, t0, t0, ledger.of(set(submitted))))
    out.figures["submitted_first"] = None  # the pool takes the whole list in one call
    out.tally = ledger.tally([*(f"w{i}" for i in range(PROCS)), *submitted])
    return out


# -- 5: submit to handler start, idle --------------------------------------------------------------


def latency(system: System, sizes: Sizes) -> Outcome:
    """One stamp task at a time on idle workers: ms from just before the submit call to the body's
    start, p50 and p99 over `latency` samples after `warmup` more."""
    total = sizes.warmup + sizes.latency
    submitted = new_ids("l", total)
    samples: list[float] = []
    with Stack(system) as stack:
        sub = system.submitter(stack.where)
        try:
            stack.start_workers()
            stack.wait_ready()
            for bid in submitted:
                t0 = time.time()
                sub.submit_all("stamp", [(bid, 0.0)])
                started = stack.ledger.wait_start(bid, 30)
                samples.append((started - t0) * 1000)
        finally:
            sub.close()
        ms = samples[sizes.warmup :]
        out = Outcome({"n": len(ms), "p50": percentile(ms, 50), "p99": percentile(ms, 99)})
        return finish(stack, submitted, out)


# -- a worker crash: does a running task run again? --------------------------------------------------


def held(ledger: Ledger) -> int:
    """How many times the crash workload's task has started."""
    ledger.poll()
    return len(ledger.began.get("h", []))


def crash(system: System, sizes: Sizes) -> Outcome:
    """A task sleeping `hold_s` starts; every worker process is SIGKILLed; new workers start. Does
    the task start again within `crash_bound_s` of the kill, and when?"""
    with Stack(system) as stack:
        sub = system.submitter(stack.where)
        try:
            warm_up(stack, sub, 2)
            sub.submit_all("hold", [("h", sizes.hold_s)])
        finally:
            sub.close()
        poll_until(lambda: held(stack.ledger), 30, "the held task to start", 0.005)
        killed = time.time()
        stack.kill_workers()
        stack.start_workers()
        stack.wait_ready()
        left = sizes.crash_bound_s - (time.time() - killed)
        try:
            poll_until(lambda: held(stack.ledger) >= 2, max(left, 0.0), "the held task to start again", 0.01)
        except TimeoutError:
            return Outcome({"survived": False, "recovery_s": None, "bound_s": sizes.crash_bound_s})
        return Outcome({"survived": True, "recovery_s": stack.ledger.began["h"][1] - killed})
