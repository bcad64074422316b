"""`python -m bench.run`: submit, drain, latency and CPU benchmarks against a real broker and workers.

Every run starts its own broker (free loopback port, temp SQLite file) and its own workers, and
stops them before the next. Results go to a rich table and to JSON (bench/results/latest.json).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from ajq import Client
from bench import baseline, flow
from bench.apps import spin
from bench.procs import ROOT, Cluster, LoadMeter, poll_until, stop_on_sigterm
from bench.report import LOAD, Metric, Results, Run, Spec, Target, machine_info, percentile, table, write_json

DEFAULT_OUT = ROOT / "bench" / "results" / "latest.json"
BASELINE = ROOT / "bench" / "baseline.json"
WORKER_PROCS = 2
POLL_S = 0.02  # how often drain and CPU runs ask the broker for the queue's counts
CPU_TASK_S = 0.05  # the calibrated length of one CPU task

console = Console() if sys.stdout.isatty() else Console(width=130)


@dataclass(frozen=True)
class Sizes:
    """How much work each benchmark does."""

    single: int = 2_000  # submit() calls, one task each
    batched: int = 50_000  # tasks sent with submit_many
    batch_size: int = 1_000  # tasks per submit_many call
    drain: int = 20_000  # no-op tasks queued before the worker starts
    latency: int = 200  # samples, one task at a time
    warmup: int = 5  # latency samples run first and not counted
    cpu_tasks: int = 200  # ~50 ms tasks


FULL = Sizes()
QUICK = Sizes(single=300, batched=5_000, drain=2_000, latency=50, warmup=2, cpu_tasks=40)

SPECS = [
    Spec("submit", "submit_single", "submit(), 1 task per call", "tasks/s"),
    Spec("submit", "submit_batched", "submit_many(), 1,000 per call", "tasks/s", Target(">=", 30_000)),
    Spec("drain", "drain", f"drain no-ops, --procs {WORKER_PROCS}", "tasks/s", Target(">=", 5_000)),
    Spec("latency", "start_p50", "submit-to-start p50", "ms", Target("<=", 2.0)),
    Spec("latency", "start_p99", "submit-to-start p99", "ms"),
    Spec("latency", "done_p50", "submit-to-complete-seen p50", "ms"),
    Spec("latency", "done_p99", "submit-to-complete-seen p99", "ms"),
    Spec("cpu", "cpu_efficiency", f"efficiency, --procs {WORKER_PROCS}", "%", Target(">=", 90.0)),
    Spec("cpu", "cpu_wall_s", "wall time, whole batch", "s"),
    Spec("cpu", "cpu_task_ms", "task CPU time, calibrated here", "ms"),
    Spec("cpu", "cpu_task_worker_ms", "task CPU time in the worker (p50)", "ms"),
    Spec("weighted", "share_critical", "share of queue weighted 6 (of 6/3/1)", "%", Target(">=", 57.0)),
    Spec("weighted", "share_default", "share of queue weighted 3", "%"),
    Spec("weighted", "share_low", "share of queue weighted 1", "%"),
    Spec("weighted", "share_off", "largest distance from 60/30/10", "points", Target("<=", 3.0)),
    Spec("delayed", "delayed_p50", "delayed task: start after its time, p50", "ms"),
    Spec("delayed", "delayed_p99", "delayed task: start after its time, p99", "ms", Target("<=", 10.0)),
    Spec("chain", "chain_total_ms", "dependency chain, first start to last end", "ms"),
    Spec("chain", "chain_link_ms", "dependency chain, per link", "ms"),
    Spec("lost", "lost_recovery_s", "worker SIGKILLed: its task runs again after", "s", Target("<=", 6.0)),
    Spec("cancel", "cancel_p50", "running task cancelled: terminated after, p50", "ms", Target("<=", 100.0)),
    Spec("cancel", "cancel_max", "running task cancelled: terminated after, max", "ms"),
]


# -- helpers ----------------------------------------------------------------------------------


def wait_complete(cluster: Cluster, c: Client, queue: str, n: int, timeout: float) -> None:
    """Poll the queue's counts every POLL_S until `n` tasks are complete; raise after `timeout`."""

    def done() -> bool:
        for proc in cluster.procs:
            proc.check_alive()
        counts = c.queue_info(queue).counts
        if counts.get("complete", 0) > n:
            raise RuntimeError(f"queue {queue!r} has more complete tasks than submitted: {counts}")
        return counts.get("complete", 0) == n

    try:
        poll_until(done, timeout, f"{n} tasks complete on {queue!r}", POLL_S)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; counts: {c.queue_info(queue).counts}") from None


def start_worker(cluster: Cluster, c: Client, queue: str, max_concurrent: int = 1_000) -> None:
    """Configure `queue`, start a worker with WORKER_PROCS processes on it, wait until registered."""
    c.configure_queue(queue, max_concurrent=max_concurrent)
    worker = cluster.start_worker(queue, WORKER_PROCS)
    cluster.wait_registered(c, queue, worker)


# -- the benchmarks ---------------------------------------------------------------------------


def submit_single(c: Client, n: int, queue: str) -> float:
    """Tasks/s for `n` submit() calls of one task each, on a queue no worker serves."""
    t0 = time.perf_counter()
    for i in range(n):
        c.submit("noop", {"i": i}, queue=queue)
    return n / (time.perf_counter() - t0)


def submit_batched(c: Client, n: int, batch: int, queue: str) -> float:
    """Tasks/s for `n` tasks sent with submit_many, `batch` tasks per call."""
    batches = [[("noop", {"i": i}) for i in range(start, min(start + batch, n))] for start in range(0, n, batch)]
    t0 = time.perf_counter()
    for tasks in batches:
        c.submit_many(tasks, queue=queue)
    return n / (time.perf_counter() - t0)


def bench_submit(sizes: Sizes) -> Run:
    """Committed submit rates: one task per call, then batches."""
    with Cluster() as cluster, cluster.client() as c:
        for q in ("bench-single", "bench-batched"):
            c.configure_queue(q)
        meter = LoadMeter(cluster)
        meter.start()
        single = submit_single(c, sizes.single, "bench-single")
        batched = submit_batched(c, sizes.batched, sizes.batch_size, "bench-batched")
        return {"submit_single": single, "submit_batched": batched, LOAD: meter.stop()}


def bench_drain(sizes: Sizes) -> Run:
    """Queue no-op tasks first, then start a worker: tasks/s from its registration until all complete."""
    n, q = sizes.drain, "bench-drain"
    with Cluster() as cluster, cluster.client() as c:
        c.configure_queue(q, max_concurrent=1_000)
        for start in range(0, n, sizes.batch_size):
            c.submit_many([("noop", None)] * min(sizes.batch_size, n - start), queue=q)
        worker = cluster.start_worker(q, WORKER_PROCS)
        cluster.wait_registered(c, q, worker)
        meter = LoadMeter(cluster)
        meter.start()
        t0 = time.perf_counter()
        wait_complete(cluster, c, q, n, timeout=60 + n / 100)
        return {"drain": n / (time.perf_counter() - t0), LOAD: meter.stop()}


def latency_sample(c: Client, queue: str) -> tuple[float, float]:
    """One task on an idle system: (submit-to-start, submit-to-complete-seen) in seconds."""
    t0 = time.time()
    submitted = c.submit("stamp", None, queue=queue)
    info = c.wait(submitted.id, timeout=10.0)
    seen = time.time()
    if info.state != "complete":
        raise RuntimeError(f"latency task {info.id} ended {info.state}: {info.last_error}")
    return info.result["start"] - t0, seen - t0


def bench_latency(sizes: Sizes) -> Run:
    """Submit-to-start and submit-to-complete-seen percentiles, one task at a time, in ms."""
    q = "bench-latency"
    with Cluster() as cluster, cluster.client() as c:
        start_worker(cluster, c, q)
        for _ in range(sizes.warmup):
            latency_sample(c, q)
        meter = LoadMeter(cluster)
        meter.start()
        samples = [latency_sample(c, q) for _ in range(sizes.latency)]
        load = meter.stop()
    starts = [s * 1000 for s, _ in samples]
    dones = [d * 1000 for _, d in samples]
    return {
        "start_p50": percentile(starts, 50),
        "start_p99": percentile(starts, 99),
        "done_p50": percentile(dones, 50),
        "done_p99": percentile(dones, 99),
        LOAD: load,
    }


def cpu_time(n: int) -> float:
    """CPU seconds this process spends on spin(n)."""
    t0 = time.process_time()
    spin(n)
    return time.process_time() - t0


def calibrate(seconds: float = CPU_TASK_S) -> tuple[int, float]:
    """A loop count for spin() taking about `seconds` here, and its measured CPU time (median of 5)."""
    n = 10_000
    while cpu_time(n) < 0.01:
        n *= 2
    for _ in range(2):
        n = max(1, round(n * seconds / statistics.median(cpu_time(n) for _ in range(3))))
    return n, statistics.median(cpu_time(n) for _ in range(5))


def bench_cpu(sizes: Sizes) -> Run:
    """Wall time of a batch of ~50 ms CPU tasks on WORKER_PROCS processes, against the ideal."""
    loops, single = calibrate()
    n, q = sizes.cpu_tasks, "bench-cpu"
    with Cluster() as cluster, cluster.client() as c:
        start_worker(cluster, c, q)
        meter = LoadMeter(cluster)
        meter.start()
        t0 = time.perf_counter()
        ids = c.submit_many([("spin", {"n": loops})] * n, queue=q)
        wait_complete(cluster, c, q, n, timeout=60 + 10 * n * single)
        wall = time.perf_counter() - t0
        load = meter.stop()
        in_worker = statistics.median(c.get(i).result["cpu_s"] for i in ids)
    return {
        "cpu_efficiency": 100 * n * single / WORKER_PROCS / wall,
        "cpu_wall_s": wall,
        "cpu_task_ms": single * 1000,
        "cpu_task_worker_ms": in_worker * 1000,
        LOAD: load,
    }


BENCHES: dict[str, Callable[[Sizes], Run]] = {
    "submit": bench_submit,
    "drain": bench_drain,
    "latency": bench_latency,
    "cpu": bench_cpu,
    "weighted": lambda s: flow.bench_weighted(flow_sizes(s)),
    "delayed": lambda s: flow.bench_delayed(flow_sizes(s)),
    "chain": lambda s: flow.bench_chain(flow_sizes(s)),
    "lost": lambda s: flow.bench_lost(flow_sizes(s)),
    "cancel": lambda s: flow.bench_cancel(flow_sizes(s)),
}


def flow_sizes(sizes: Sizes) -> flow.FlowSizes:
    """Issue 3's benchmarks are smaller in a quick run, like the others."""
    return flow.FLOW_QUICK if sizes == QUICK else flow.FLOW_FULL


# -- running and reporting --------------------------------------------------------------------


def run_all(names: list[str], sizes: Sizes, repeat: int) -> Results:
    """Run each named benchmark `repeat` times; a failed benchmark is recorded and skipped."""
    results = Results({s.key: Metric(s) for s in SPECS if s.bench in names})
    for name in names:
        for i in range(repeat):
            console.print(f"[bold]{name}[/] run {i + 1}/{repeat} ...", end=" ")
            try:
                run = BENCHES[name](sizes)
            except Exception as exc:
                console.print(f"[red]failed:[/] {exc}")
                results.errors[name] = f"{type(exc).__name__}: {exc}"
                break
            console.print(", ".join(f"{k}={v:,.2f}" for k, v in run.items()))
            results.add(name, run)
    return results


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller counts: a smoke run of well under a minute")
    p.add_argument("--repeat", type=int, default=1, help="runs of each benchmark; the table shows median, min, max")
    p.add_argument("--only", help=f"comma-separated benchmarks to run, of: {','.join(BENCHES)}")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON file to write (default {DEFAULT_OUT})")
    p.add_argument("--baseline", type=Path, default=BASELINE, help="the committed figures to compare with")
    p.add_argument(
        "--write-baseline", action="store_true", help="make this run the baseline for its mode (commit it, saying why)"
    )
    p.add_argument("--strict", action="store_true", help="exit 3 if a figure fell by more than 20%% (a CI guard)")
    args = p.parse_args(argv)
    args.names = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else list(BENCHES)
    unknown = [n for n in args.names if n not in BENCHES]
    if unknown or not args.names:
        p.error(f"--only {args.only!r}: unknown {unknown}; choose from {', '.join(BENCHES)}")
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks, print the table, write the JSON; 1 if a benchmark failed."""
    args = parse(argv)
    stop_on_sigterm()
    sizes = QUICK if args.quick else FULL
    machine = machine_info()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        results = run_all(args.names, sizes, args.repeat)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: processes stopped, nothing written[/]")
        return 130
    console.print(table(results, machine, args.repeat, args.quick))
    report = {
        "started_at": started,
        "mode": "quick" if args.quick else "full",
        "repeat": args.repeat,
        "benchmarks": args.names,
        "machine": machine,
        "sizes": asdict(sizes),
        "worker_procs": WORKER_PROCS,
        "metrics": [m.to_json() for m in results.measured()],
        "other_load_cpus": results.loads,
        "errors": results.errors,
    }
    write_json(args.out, report)
    console.print(f"JSON written to {args.out}")
    for name, error in results.errors.items():
        console.print(f"[red]{name} failed:[/] {error}")
    regressed = guard(args, results, {"started_at": started, "repeat": args.repeat, "machine": machine})
    return 1 if results.errors else 3 if regressed and args.strict else 0


def guard(args: argparse.Namespace, results: Results, about: dict[str, object]) -> bool:
    """Compare with the baseline (or write it); True if a figure regressed."""
    mode = "quick" if args.quick else "full"
    if args.write_baseline:
        baseline.write(args.baseline, mode, results.measured(), about)
        console.print(f"baseline for {mode} runs written to {args.baseline}: commit it, saying why")
        return False
    old = baseline.load(args.baseline, mode)
    if old is None:
        console.print(f"no {mode} baseline in {args.baseline} yet: --write-baseline makes one")
        return False
    changes = baseline.compare(results.measured(), old)
    console.print(baseline.table(changes, mode, args.baseline))
    fell = [c.label for c in changes if c.regressed]
    if fell:
        console.print(f"[red]{len(fell)} figure(s) fell by more than {baseline.MAX_DROP:.0%}:[/] {', '.join(fell)}")
    return bool(fell)


if __name__ == "__main__":
    sys.exit(main())
