"""`python -m bench.peers`: ajq and its peers on the same workloads, in one run, each task checked
to run exactly once.

Systems run interleaved (every system on one workload, then the next workload), so figures compared
with each other were taken minutes apart at most; ratios within one repeat are what count on a
shared machine whose speed drifts. Tables go to the terminal, every raw run to
bench/results/peers.json, the medians as markdown to bench/results/peers.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.peers import redis_server, workloads
from bench.peers.systems import SYSTEMS, System
from bench.peers.tables import GROUPS, POOL, WORKLOADS, Record, crash_table, markdown, workload_table
from bench.procs import ROOT, stop_on_sigterm
from bench.report import machine_info, write_json
from bench.run import CPU_TASK_S, calibrate

DEFAULT_OUT = ROOT / "bench" / "results" / "peers.json"
ORDER = ("queue", "clients", "cpu", "latency", "crash")  # the groups, in the order they run

console = Console() if sys.stdout.isatty() else Console(width=150)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small counts: a smoke run of a few minutes")
    p.add_argument("--repeat", type=int, default=1, help="runs of each workload (the crash workload runs once)")
    p.add_argument("--only", help=f"comma-separated systems, of: {','.join(SYSTEMS)}")
    p.add_argument("--workloads", help=f"comma-separated workloads, of: {','.join(GROUPS)}")
    p.add_argument("--crash-bound-s", type=float, help="how long a killed worker's task may take to run again")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON file to write (default {DEFAULT_OUT})")
    args = p.parse_args(argv)
    args.systems = _names(p, "--only", args.only, list(SYSTEMS))
    args.workloads = _names(p, "--workloads", args.workloads, list(GROUPS))
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


def _names(p: argparse.ArgumentParser, flag: str, given: str | None, known: list[str]) -> list[str]:
    names = [n.strip() for n in given.split(",") if n.strip()] if given else known
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        p.error(f"{flag} {given!r}: unknown {unknown}; choose from {', '.join(known)}")
    return [n for n in known if n in names]


def unavailable(system: type[System]) -> str | None:
    """Why the system cannot run here, or None."""
    if importlib.util.find_spec(system.package) is None:
        return f"{system.package} is not installed: pip install -e '.[peers]'"
    if system.needs_redis and redis_server.available() is None:
        return f"redis-server not found: {redis_server.INSTALL_HINT}"
    return None


def run_one(repeat: int, group: str, key: str, job: Callable[[], workloads.Outcome]) -> Record:
    """Run one workload group on one system; a failure is recorded, not raised."""
    console.print(f"[bold]{group}[/] {key} run {repeat + 1} ...", end=" ")
    t0 = time.monotonic()
    record = Record(repeat, group, key)
    try:
        out = job()
        record.figures, record.tally = out.figures, out.tally.to_json() if out.tally else None
        shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.figures.items()}
        console.print(shown, record.tally or "", highlight=False)
    except Exception as exc:
        record.error = f"{type(exc).__name__}: {exc}"
        console.print(f"[red]failed:[/] {record.error}")
    record.seconds = time.monotonic() - t0
    return record


def job(group: str, system: System, sizes: workloads.Sizes, loops: int) -> Callable[[], workloads.Outcome]:
    """The call that runs `group` on `system`."""
    if group == "queue":
        return lambda: workloads.queue(system, sizes)
    if group == "clients":
        return lambda: workloads.clients(system, sizes)
    if group == "cpu":
        return lambda: workloads.cpu(system, sizes, loops)
    if group == "latency":
        return lambda: workloads.latency(system, sizes)
    return lambda: workloads.crash(system, sizes)


def run_all(args: argparse.Namespace, sizes: workloads.Sizes, systems: list[str]) -> list[Record]:
    groups = [g for g in ORDER if g in {GROUPS[w] for w in args.workloads}]
    loops = calibrate(CPU_TASK_S)[0] if "cpu" in groups else 0
    records: list[Record] = []
    with tempfile.TemporaryDirectory(prefix="ajq-peers-") as tmp:
        for r in range(args.repeat):
            for group in groups:
                if group == "crash" and r > 0:
                    continue  # a yes or no with a time set by each system's settings: once is enough
                for key in systems:
                    records.append(run_one(r, group, key, job(group, SYSTEMS[key](), sizes, loops)))
                if group == "cpu":
                    records.append(run_one(r, group, POOL, lambda: workloads.pool_cpu(sizes, loops, Path(tmp))))
    return records


def git(*args: str) -> str:
    run = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return run.stdout.strip()


def environment() -> dict[str, Any]:
    """Machine, commit and the versions of everything measured."""
    from importlib.metadata import PackageNotFoundError, version

    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")
    versions: dict[str, str] = {}
    for pkg in ("ajq", "celery", "kombu", "dramatiq", "rq", "huey", "arq", "redis", "pyzmq"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = "not installed"
    program = redis_server.available()
    redis_v = subprocess.run([program, "--version"], capture_output=True, text=True).stdout if program else ""
    versions["redis-server"] = redis_v.split("v=")[1].split()[0] if "v=" in redis_v else "not installed"
    return {
        "machine": {**machine_info(), "cpu_model": cpu},
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "versions": versions,
    }


def main(argv: list[str] | None = None) -> int:
    """Run, print the tables, write the JSON; 1 if a task was lost or duplicated or a run failed."""
    args = parse(argv)
    stop_on_sigterm()
    sizes = workloads.QUICK if args.quick else workloads.FULL
    if args.crash_bound_s:
        sizes = replace(sizes, crash_bound_s=args.crash_bound_s)
    skipped = {k: why for k in args.systems if (why := unavailable(SYSTEMS[k]))}
    for key, why in skipped.items():
        console.print(f"[yellow]skipping {SYSTEMS[key].label}:[/] {why}")
    systems = [k for k in args.systems if k not in skipped]
    started = datetime.now(UTC).isoformat(timespec="seconds")
    env = environment()
    try:
        records = run_all(args, sizes, systems)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: processes stopped, nothing written[/]")
        return 130
    for name in (w for w in WORKLOADS if w in args.workloads):
        console.print(workload_table(name, records, systems, args.repeat))
    if "crash" in args.workloads:
        console.print(crash_table(records, systems))
    write_json(args.out, {
        "started_at": started, "mode": "quick" if args.quick else "full", "repeat": args.repeat, **env,
        "sizes": asdict(sizes), "workloads": args.workloads, "skipped": skipped,
        "settings": {k: {"label": s.label, "settings": s.settings, "durability": s.durability,
                         "crash_note": s.crash_note, "scale": s.scale} for k, s in SYSTEMS.items() if k in systems},
        "runs": [asdict(r) for r in records],
    })  # fmt: skip
    args.out.with_suffix(".md").write_text(markdown(records, systems))
    console.print(f"JSON written to {args.out}, the medians as markdown to {args.out.with_suffix('.md')}")
    return verdict(records)


def verdict(records: list[Record]) -> int:
    """Say loudly what was lost, duplicated or failed; 1 if anything was."""
    bad = 0
    for r in records:
        t = r.tally
        if t and (t["lost"] or t["duplicated"] or t["unexpected"]):
            console.print(f"[bold red]EXACTLY ONCE BROKEN[/] {r.system} {r.group} run {r.repeat + 1}: {t}")
            bad += 1
        if r.error:
            console.print(f"[red]{r.system} {r.group} run {r.repeat + 1} failed:[/] {r.error}")
            bad += 1
    return 1 if bad else 0
