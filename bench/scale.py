"""`python -m bench.scale`: ajq with a million queued tasks, and with many idle workers.

One real `ajbroker` (temp SQLite file) and real `ajworker` processes, as bench/procs.py starts
them. The run goes in phases on the same broker, so each figure with the big queue has a
baseline taken on the same broker before the big queue existed:

1. empty broker: idle CPU of the broker with one worker; submit-to-start latency on a small
   `probe` queue; the drain rate of DRAIN tasks on a `small` queue; the answer time of
   queues() and tasks(limit=20);
2. N tasks (1,000,000; 100,000 with --quick) submitted to `big` with submit_many, 10,000 per
   call, no worker on it: submit rate, the WAL file's size after each call (its peak) and after,
   the broker's RSS after;
3. with the N waiting: the same latency on `probe`, the same answer times, the drain rate of
   DRAIN tasks of `big` with --procs 2, the broker's RSS and the WAL's size after;
4. idle workers: as many `ajworker --procs 1` supervisors as fit (up to 100) on one queue, the
   broker's CPU over a 10 s window; then the broker with one worker again, with the N waiting.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

from ajq import Client
from bench.procs import ROOT, Cluster, LoadMeter, Proc, poll_until, stop_on_sigterm
from bench.report import machine_info, percentile, write_json

DEFAULT_OUT = ROOT / "bench" / "results" / "scale.json"
BATCH = 10_000  # tasks per submit_many call
DRAIN_PROCS = 2
CPU_WINDOW_S = 10.0  # the CPU measurements' window: the measurement, not a wait
QUERY_REPEAT = 20  # answer times: the median of this many calls
WORKER_BUDGET = 0.5  # of the available memory, at most, for the idle workers
MAX_IDLE_WORKERS = 100
POLL_S = 0.02

console = Console() if sys.stdout.isatty() else Console(width=130)


@dataclass(frozen=True)
class Sizes:
    """How much work the run does."""

    queued: int = 1_000_000  # tasks in the big queue
    drain: int = 20_000  # tasks drained, from the small queue and from the big one
    drains: int = 3  # drains of each kind; the table shows the median
    latency: int = 100  # submit-to-start samples, after `warmup`
    warmup: int = 10


FULL = Sizes()
QUICK = Sizes(queued=100_000, drain=5_000, drains=2, latency=50, warmup=5)


@dataclass
class Row:
    """One figure of the table."""

    key: str
    label: str
    value: float
    unit: str
    target: str = ""
    met: bool | None = None
    other_load: float | None = None  # CPUs busy with other processes while it was measured


class Scale:
    """The run: one cluster, its processes, and the figures gathered so far."""

    def __init__(self, cluster: Cluster, client: Client, sizes: Sizes) -> None:
        self.cluster = cluster
        self.c = client
        self.sizes = sizes
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.broker = psutil.Process(cluster.procs[0].popen.pid)
        self.wal = cluster.tmp / "bench.db-wal"
        self.drain_wal_peak = 0.0
        self.drain_wal_restarts = 0
        self.pending_load: float | None = None  # the last measurement's other load, for the next row

    def add(self, key: str, label: str, value: float, unit: str, target: str = "", met: bool | None = None) -> None:
        row = Row(key, label, value, unit, target, met, self.pending_load)
        self.pending_load = None
        self.rows.append(row)
        shown = f"{value:,.2f}" if isinstance(value, float) else f"{value:,}"
        console.print(f"  {label}: [bold]{shown}[/] {unit}" + (f" (target {target})" if target else ""))

    def value(self, key: str) -> float:
        return next(r.value for r in self.rows if r.key == key)

    # -- measurements -----------------------------------------------------------------------

    def wal_mb(self) -> float:
        """The WAL file's size now, in MB (0 if there is none)."""
        try:
            return self.wal.stat().st_size / 1e6
        except FileNotFoundError:
            return 0.0

    def wal_seq(self) -> int:
        """The WAL header's checkpoint sequence number: SQLite adds one each time it restarts the
        WAL from its start after a complete checkpoint (so a steady number means starved checkpoints)."""
        try:
            with self.wal.open("rb") as f:
                header = f.read(16)
        except FileNotFoundError:
            return 0
        return int.from_bytes(header[12:16], "big") if len(header) == 16 else 0

    def rss_mb(self) -> float:
        return self.broker.memory_info().rss / 1e6

    def broker_cpu(self) -> float:
        """The broker's CPU use over CPU_WINDOW_S, in % of one core."""
        meter = LoadMeter(self.cluster)
        meter.start()
        t = self.broker.cpu_times()
        c0, w0 = t.user + t.system, time.perf_counter()
        end = w0 + CPU_WINDOW_S
        while (left := end - time.perf_counter()) > 0:
            self.cluster.procs[0].check_alive()
            time.sleep(min(left, 1.0))
        t = self.broker.cpu_times()
        cpu = 100 * (t.user + t.system - c0) / (time.perf_counter() - w0)
        self.pending_load = meter.stop()
        return cpu

    def start_worker(self, queue: str, procs: int) -> Proc:
        """A worker on `queue`, registered with the broker before this returns."""
        before = self.c.queue_info(queue).workers
        worker = self.cluster.start_worker(queue, procs)
        self.cluster.wait_registered(self.c, queue, worker, before + 1)
        return worker

    def latency_ms(self, queue: str) -> tuple[float, float]:
        """Submit-to-start of one `stamp` task at a time on `queue`'s idle worker: (p50, p99) in ms."""
        samples = []
        meter = LoadMeter(self.cluster)
        for i in range(self.sizes.warmup + self.sizes.latency):
            if i == self.sizes.warmup:
                meter.start()
            t0 = time.time()
            task = self.c.submit("stamp", None, queue=queue)
            info = self.c.wait(task.id, timeout=30.0)
            if info.state != "complete":
                raise RuntimeError(f"latency task {info.id} ended {info.state}: {info.last_error}")
            if i >= self.sizes.warmup:
                samples.append((info.result["start"] - t0) * 1000)
        self.pending_load = meter.stop()
        return percentile(samples, 50), percentile(samples, 99)

    def query_ms(self) -> tuple[float, float]:
        """Median answer time of queues() and of tasks(limit=20), each over QUERY_REPEAT calls, in ms."""
        out = []
        for call in (self.c.queues, lambda: self.c.tasks(limit=20)):
            times = []
            for _ in range(QUERY_REPEAT):
                t0 = time.perf_counter()
                call()
                times.append((time.perf_counter() - t0) * 1000)
            out.append(statistics.median(times))
        return out[0], out[1]

    def drain(self, queue: str, n: int) -> float:
        """Start a --procs DRAIN_PROCS worker on `queue`; tasks/s from its registration until `n`
        more tasks are complete; the worker is stopped after."""
        done0 = self.c.queue_info(queue).counts.get("complete", 0)
        seq0 = self.wal_seq()
        worker = self.start_worker(queue, DRAIN_PROCS)
        t0 = time.perf_counter()
        peak_wal = [self.wal_mb()]

        def drained() -> bool:
            worker.check_alive()
            peak_wal[0] = max(peak_wal[0], self.wal_mb())
            return self.c.queue_info(queue).counts.get("complete", 0) - done0 >= n

        poll_until(drained, 60 + n / 100, f"{n} tasks drained from {queue!r}", POLL_S)
        rate = n / (time.perf_counter() - t0)
        worker.stop()
        self.cluster.procs.remove(worker)
        self.drain_wal_peak = max(self.drain_wal_peak, peak_wal[0])
        self.drain_wal_restarts += self.wal_seq() - seq0
        return rate

    def drain_small(self) -> float:
        """Queue DRAIN tasks on `small` (empty until now) and drain them: tasks/s."""
        n = self.sizes.drain
        for start in range(0, n, BATCH):
            self.c.submit_many([("noop", None)] * min(BATCH, n - start), queue="small")
        return self.drain("small", n)

    def submit_big(self, queue: str) -> tuple[float, float]:
        """Submit `queued` no-ops to `queue`, BATCH per call: (tasks/s, the WAL's peak size in MB)."""
        n = self.sizes.queued
        batch = [("noop", None)] * BATCH
        peak = self.wal_mb()
        self.wal_peak_at = 0
        seq0 = self.wal_seq()
        self.wal_trajectory: list[tuple[int, float]] = []  # (tasks submitted, WAL MB) after each call
        t0 = time.perf_counter()
        for start in range(0, n, BATCH):
            self.c.submit_many(batch[: min(BATCH, n - start)], queue=queue)
            wal = self.wal_mb()
            self.wal_trajectory.append((min(n, start + BATCH), wal))
            if wal > peak:
                peak, self.wal_peak_at = wal, min(n, start + BATCH)
        rate = n / (time.perf_counter() - t0)
        self.wal_restarts = self.wal_seq() - seq0
        return rate, peak

    # -- the phases -------------------------------------------------------------------------

    def empty(self) -> None:
        console.print("[bold]phase 1[/]: empty broker")
        self.c.configure_queue("probe", max_concurrent=1_000)
        self.c.configure_queue("small", max_concurrent=1_000)
        self.c.configure_queue("big", max_concurrent=1_000)
        probe = self.start_worker("probe", 1)
        self.worker_mb = sum(p.memory_info().rss for p in tree(probe.popen.pid)) / 1e6
        cpu = self.broker_cpu()
        self.add("idle_cpu", "idle: broker with 1 worker, CPU", cpu, "% core", "< 1", cpu < 1)
        p50, p99 = self.latency_ms("probe")
        self.add("latency_empty_p50", "submit-to-start p50, empty broker", p50, "ms")
        self.add("latency_empty_p99", "submit-to-start p99, empty broker", p99, "ms")
        qs, ts = self.query_ms()
        self.add("queues_empty_ms", "queues() answer, empty broker", qs, "ms")
        self.add("tasks_empty_ms", "tasks(limit=20) answer, empty broker", ts, "ms")
        n, k = self.sizes.drain, self.sizes.drains
        rate = statistics.median(self.drain_small() for _ in range(k))
        label = f"drain {n:,}-task queue, --procs {DRAIN_PROCS}, empty broker (median of {k})"
        self.add("drain_small", label, rate, "tasks/s")

    def big(self) -> None:
        n = self.sizes.queued
        console.print(f"[bold]phase 2[/]: {n:,} tasks queued")
        rate, peak = self.submit_big("big")
        self.add("submit_rate", f"submit {n:,} with submit_many ({BATCH:,}/call)", rate, "tasks/s")
        self.add("submit_s", f"submit {n:,}: time", n / rate, "s")
        self.add("wal_peak_submit", "WAL size, peak during the submits", peak, "MB")
        self.add("wal_peak_at", "  first reached after this many submitted", self.wal_peak_at, "")
        marks = [self.wal_trajectory[max(0, round(len(self.wal_trajectory) * f) - 1)] for f in (0.1, 0.25, 0.5, 1)]
        self.notes.append("WAL during the submits: " + ", ".join(f"{mb:.1f} MB at {k:,}" for k, mb in marks))
        calls = len(self.wal_trajectory)
        self.add("wal_restarts", f"  WAL restarts from its start, over {calls} calls", self.wal_restarts, "")
        self.add("wal_after_submit", "WAL size after the submits", self.wal_mb(), "MB")
        rss = self.rss_mb()
        self.add("rss_after_submit", f"broker RSS, {n:,} queued", rss, "MB", "< 200", rss < 200)
        self.add("db_mb", "database file size", (self.cluster.tmp / "bench.db").stat().st_size / 1e6, "MB")

    def loaded(self) -> None:
        n = self.sizes.queued
        console.print(f"[bold]phase 3[/]: with {n:,} waiting")
        p50, p99 = self.latency_ms("probe")
        ratio = p50 / self.value("latency_empty_p50")
        self.add("latency_big_p50", f"submit-to-start p50, {n:,} waiting elsewhere", p50, "ms")
        self.add("latency_big_p99", f"submit-to-start p99, {n:,} waiting elsewhere", p99, "ms")
        self.add("latency_ratio", "  p50 ratio to empty broker", ratio, "x", "<= 1.5", ratio <= 1.5)
        qs, ts = self.query_ms()
        self.add("queues_big_ms", f"queues() answer, {n:,} queued", qs, "ms", "< 100", qs < 100)
        self.add("tasks_big_ms", f"tasks(limit=20) answer, {n:,} queued", ts, "ms", "< 100", ts < 100)
        # big and small drains alternate, so the machine's drift over minutes falls on both alike
        d, k = self.sizes.drain, self.sizes.drains
        big, small = [], []
        self.drain_wal_restarts = 0  # count the loaded broker's drains only
        for _ in range(k):
            big.append(self.drain("big", d))
            small.append(self.drain_small())
        rate, small_rate = statistics.median(big), statistics.median(small)
        self.add("drain_big", f"drain {d:,} of the {n:,}-task queue (median of {k})", rate, "tasks/s")
        ratio = rate / self.value("drain_small")
        self.add("drain_ratio", "  ratio to the empty broker's small queue", ratio, "x", ">= 0.8", ratio >= 0.8)
        self.add(
            "drain_small_loaded", f"drain {d:,}-task queue, {n:,} in another (median of {k})", small_rate, "tasks/s"
        )
        ratio = rate / small_rate
        self.add("drain_ratio_loaded", "  big queue's ratio to that, same minutes", ratio, "x", ">= 0.8", ratio >= 0.8)
        self.add("wal_peak_drain", "WAL size, peak during those drains", self.drain_wal_peak, "MB")
        restarts = self.drain_wal_restarts
        self.add("wal_restarts_drain", f"  WAL restarts from its start, over those {2 * k} drains", restarts, "")
        self.add("wal_after_drain", "WAL size after those drains", self.wal_mb(), "MB")
        rss = self.rss_mb()
        self.add("rss_after_drain", "broker RSS after those drains", rss, "MB", "< 200", rss < 200)

    def idle_workers(self) -> None:
        avail = psutil.virtual_memory().available / 1e6
        fit = int(avail * WORKER_BUDGET / max(self.worker_mb, 1.0))
        k = max(1, min(MAX_IDLE_WORKERS, fit))
        console.print(
            f"[bold]phase 4[/]: {k} idle workers (one ajworker --procs 1 is {self.worker_mb:.0f} MB; "
            f"{avail:,.0f} MB available)"
        )
        if k < MAX_IDLE_WORKERS:
            self.notes.append(f"only {k} idle workers fit in half of the {avail:,.0f} MB available")
        self.c.configure_queue("idle", max_concurrent=1_000)
        started = [self.cluster.start_worker("idle", 1) for _ in range(k)]

        def registered() -> bool:
            for w in started:
                w.check_alive()
            return self.c.queue_info("idle").workers >= k

        poll_until(registered, 60 + 2 * k, f"{k} workers registered on 'idle'", 0.2)
        self.add("idle_workers", "idle worker supervisors connected", k, "")
        # two windows back to back: the first starts as the last worker registers, the second
        # shows whether the first was start-up and not the steady state
        for key, which in (("idle_many_cpu", "first"), ("idle_many_cpu2", "next")):
            cpu = self.broker_cpu()
            self.add(key, f"idle: broker with {k} workers, CPU, {which} 10 s", cpu, "% core", "< 2", cpu < 2)
        self.add("idle_per_worker", "  broker CPU per idle worker (next 10 s)", cpu / k, "% core")
        for w in started:
            w.stop()
            self.cluster.procs.remove(w)
        cpu = self.broker_cpu()
        label = f"idle: broker with 1 worker, {self.sizes.queued:,} queued, CPU"
        self.add("idle_cpu_big", label, cpu, "% core", "< 1", cpu < 1)


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def fmt(r: Row) -> str:
    """Whole numbers for rates and counts, more digits for small figures."""
    if r.unit in ("tasks/s", ""):
        return f"{r.value:,.0f}"
    return f"{r.value:,.3f}" if r.value < 1 else f"{r.value:,.2f}"


def render(rows: list[Row], title: str, caption: str) -> Table:
    t = Table(title=title, caption=caption)
    for col in ("figure", "value", "unit", "target", "met", "other load"):
        t.add_column(col, justify="right" if col == "value" else "left")
    for r in rows:
        met = "" if r.met is None else ("[green]yes[/]" if r.met else "[red]no[/]")
        load = "" if r.other_load is None else f"{r.other_load:.2f}"
        t.add_row(r.label, fmt(r), r.unit, r.target, met, load)
    return t


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help=f"{QUICK.queued:,} queued tasks instead of {FULL.queued:,}")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON file to write (default {DEFAULT_OUT})")
    p.add_argument(
        "--heartbeat", type=float, help="the broker's --heartbeat (default: its own, 1 s): idle cost scales with it"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the phases, print the table, write the JSON; 1 if a phase failed."""
    args = parse(argv)
    stop_on_sigterm()
    sizes = QUICK if args.quick else FULL
    machine = {**machine_info(), "mem_total_mb": psutil.virtual_memory().total / 1e6}
    started = datetime.now(UTC).isoformat(timespec="seconds")
    error = ""
    rows: list[Row] = []
    notes: list[str] = []
    runs: list[Scale] = []
    try:
        broker_args = ("--heartbeat", f"{args.heartbeat:g}") if args.heartbeat else ()
        with Cluster(broker_args=broker_args) as cluster, cluster.client(timeout=120.0) as c:
            run = Scale(cluster, c, sizes)
            rows, notes, runs = run.rows, run.notes, [run]
            for phase in (run.empty, run.big, run.loaded, run.idle_workers):
                phase()
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: processes stopped, nothing written[/]")
        return 130
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        console.print(f"[red]failed:[/] {error}")
    mode = "quick" if args.quick else "full"
    if args.heartbeat:
        mode += f", --heartbeat {args.heartbeat:g}"
    caption = (
        f"{machine['cpu_count']} CPUs, {machine['mem_total_mb']:,.0f} MB, Python {machine['python']}. other load: "
        "CPUs busy with processes outside the benchmark during the CPU windows and latency samples."
    )
    console.print(render(rows, f"ajq at scale ({mode}: {sizes.queued:,} queued)", caption))
    for note in notes:
        console.print(f"note: {note}")
    report = {
        "started_at": started,
        "mode": mode,
        "machine": machine,
        "sizes": sizes.__dict__,
        "figures": [r.__dict__ for r in rows],
        "notes": notes,
        "wal_trajectory": getattr(runs[0], "wal_trajectory", []) if runs else [],
        "error": error,
    }
    write_json(args.out, report)
    console.print(f"JSON written to {args.out}")
    return 1 if error else 0


if __name__ == "__main__":
    sys.exit(main())
