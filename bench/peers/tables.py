"""The figures over the repeats: one rich table per workload, ajq's ratios, a markdown summary."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table

from bench.peers.systems import AJQ, SYSTEMS

POOL = "pool"  # multiprocessing.Pool(2) in the CPU workload: the ceiling, not a queue
LABELS = {POOL: "multiprocessing.Pool(2)", **{k: s.label for k, s in SYSTEMS.items()}}


@dataclass
class Record:
    """One run of one workload's group on one system."""

    repeat: int
    group: str  # queue (enqueue + drain), clients, cpu, latency, crash
    system: str
    figures: dict[str, Any] = field(default_factory=dict)
    tally: dict[str, int] | None = None
    error: str | None = None
    seconds: float = 0.0  # how long the run took, startup and teardown included


@dataclass(frozen=True)
class Figure:
    """A workload's headline figure: where it comes from and which way is better."""

    group: str
    key: str
    title: str
    unit: str
    higher_better: bool = True
    extras: tuple[tuple[str, str], ...] = ()  # (figure key, column header)


WORKLOADS: dict[str, Figure] = {
    "enqueue": Figure("queue", "enqueue", "1. enqueue, one call per task, one client, no worker running", "tasks/s"),
    "clients": Figure("clients", "clients", "2. 8 client processes submitting at once, one task per call", "tasks/s"),
    "drain": Figure("queue", "drain", "3. drain the queued no-ops, 2 worker processes", "tasks/s"),
    "cpu": Figure(
        "cpu",
        "efficiency",
        "4. CPU-bound tasks of ~50 ms: ideal CPU time / (2 procs x wall)",
        "",
        extras=(("wall_s", "wall s"), ("in_body_ms", "in body ms"), ("submitted_first", "all submitted first")),
    ),
    "latency": Figure("latency", "p50", "5. submit to handler start, idle: p50", "ms", False, (("p99", "p99 ms"),)),
}
GROUPS = {
    "enqueue": "queue",
    "drain": "queue",
    "clients": "clients",
    "cpu": "cpu",
    "latency": "latency",
    "crash": "crash",
}


def fmt(x: Any, unit: str = "") -> str:
    if x is None:
        return ""
    if isinstance(x, bool):
        return "yes" if x else "no"
    if unit == "tasks/s":
        return f"{x:,.0f}"
    return f"{x:,.2f}"


def values(records: list[Record], group: str, system: str, key: str) -> dict[int, Any]:
    """The figure per repeat."""
    return {r.repeat: r.figures[key] for r in records if (r.group, r.system) == (group, system) and key in r.figures}


def ratio(fig: Figure, records: list[Record], ajq: str, peer: str) -> float | None:
    """How many times better ajq is than `peer` (> 1: ajq ahead): the median of the ratios taken
    within each repeat, so drift between repeats cancels."""
    a, p = values(records, fig.group, ajq, fig.key), values(records, fig.group, peer, fig.key)
    pairs = [(a[r], p[r]) for r in a if r in p and a[r] and p[r]]
    if not pairs:
        return None
    return float(statistics.median(x / y if fig.higher_better else y / x for x, y in pairs))


def best(fig: Figure, records: list[Record], peers: list[str]) -> str | None:
    """The peer with the best median figure."""
    medians = {p: statistics.median(v.values()) for p in peers if (v := values(records, fig.group, p, fig.key))}
    if not medians:
        return None
    pick: Callable[..., str] = max if fig.higher_better else min
    return pick(medians, key=lambda p: medians[p])


def crash_safe(system: str, records: list[Record]) -> bool:
    """Measured to run a killed worker's task again, or does so eventually by its settings."""
    measured = values(records, "crash", system, "survived")
    return any(measured.values()) or SYSTEMS[system].eventually is not None


def crash_mark(system: str, records: list[Record]) -> str:
    """Whether and when a task of a SIGKILLed worker ran again."""
    if system == POOL:
        return ""
    eventually = SYSTEMS[system].eventually or "never"
    got = [r.figures for r in records if (r.group, r.system) == ("crash", system) and r.figures]
    if not got:
        return f"not measured; by its settings: {eventually}"
    if got[0]["survived"]:
        return f"[green]yes[/], after {got[0]['recovery_s']:.1f} s"
    return f"[red]no[/] (not within {got[0]['bound_s']:g} s); by its settings: {eventually}"


def ratio_lines(fig: Figure, records: list[Record], systems: list[str]) -> list[str]:
    """ajq's ratios to the best peer and the best crash-safe peer, for each ajq run."""
    peers = [s for s in systems if s not in AJQ]
    safe = [p for p in peers if crash_safe(p, records)]
    lines = []
    for ajq in (s for s in systems if s in AJQ):
        parts = []
        for what, among in (("best peer", peers), ("best crash-safe peer", safe)):
            peer = best(fig, records, among)
            r = ratio(fig, records, ajq, peer) if peer else None
            parts.append(f"{r:.2f}x the {what} ({LABELS[peer]})" if peer and r else f"no {what} measured")
        lines.append(f"{LABELS[ajq]}: " + ", ".join(parts))
    return lines


def workload_table(name: str, records: list[Record], systems: list[str], repeat: int) -> Table:
    """One workload: every system's median, range, extras, lost and duplicated runs, ajq's ratio."""
    fig = WORKLOADS[name]
    rows = [*systems, POOL] if name == "cpu" else systems
    caption = "\n".join([
        *ratio_lines(fig, records, systems),
        "x: how many times better ajq is (higher throughput or efficiency, lower latency); "
        "ratios are medians of ratios within one repeat. crash-safe: runs a killed worker's task again.",
    ])  # fmt: skip
    t = Table(title=f"{fig.title} ({repeat} run{'s' * (repeat > 1)})", caption=caption, caption_justify="left")
    for col in ("system", "n", f"median {fig.unit}".strip(), "min - max", *(h for _, h in fig.extras)):
        t.add_column(col, justify="left" if col == "system" else "right")
    for col in ("lost", "dup", "ajq (FULL) x", "worker crash"):
        t.add_column(col, justify="left" if col == "worker crash" else "right")
    for s in rows:
        t.add_row(*row(fig, records, s))
    return t


def row(fig: Figure, records: list[Record], system: str) -> list[str]:
    runs = [r for r in records if (r.group, r.system) == (fig.group, system)]
    errors = [r.error for r in runs if r.error]
    v = list(values(records, fig.group, system, fig.key).values())
    if not v:
        why = errors[0] if errors else "not run"
        return [
            LABELS[system],
            "",
            f"[red]{why[:60]}[/]" if errors else why,
            "",
            *("" for _ in fig.extras),
            "",
            "",
            "",
            "",
        ]
    lost = sum(r.tally["lost"] + r.tally["unexpected"] for r in runs if r.tally)
    dup = sum(r.tally["duplicated"] for r in runs if r.tally)
    extras = []
    for key, _ in fig.extras:
        ev = list(values(records, fig.group, system, key).values())
        extras.append(fmt(ev[0] if isinstance(ev[0], bool) or ev[0] is None else statistics.median(ev)) if ev else "")
    r = ratio(fig, records, AJQ[0], system) if system != AJQ[0] else None
    n = runs[0].figures.get("n", "")
    return [
        LABELS[system], f"{n:,}" if n else "", fmt(statistics.median(v), fig.unit),
        f"{fmt(min(v), fig.unit)} - {fmt(max(v), fig.unit)}", *extras,
        f"[red]{lost}[/]" if lost else "0", f"[red]{dup}[/]" if dup else "0",
        f"{r:.2f}" if r else "", crash_mark(system, records),
    ]  # fmt: skip


def crash_table(records: list[Record], systems: list[str]) -> Table:
    """Each system's worker SIGKILLed while its one task runs: did the task run again, and when?"""
    t = Table(title="a worker crash: every worker process SIGKILLed mid-task, new workers started")
    for col in ("system", "ran again", "what decides"):
        t.add_column(col)
    for s in systems:
        errors = [r.error for r in records if (r.group, r.system) == ("crash", s) and r.error]
        mark = f"[red]failed: {errors[0][:60]}[/]" if errors else crash_mark(s, records)
        t.add_row(LABELS[s], mark, SYSTEMS[s].crash_note)
    return t


def markdown(records: list[Record], systems: list[str]) -> str:
    """The medians as one markdown table, one row per system, for bench/README.md."""
    med: Callable[[str, str, str], str] = lambda g, s, k: fmt(  # noqa: E731
        statistics.median(v.values()) if (v := values(records, g, s, k)) else None, "tasks/s" if g != "cpu" else ""
    )
    out = [
        "| system | enqueue/s, one call per task | 8 clients at once, tasks/s | drain/s | CPU-bound efficiency "
        "| start p50 / p99 ms | lost / duplicated | survives a worker crash |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in [*systems, POOL]:
        runs = [r for r in records if r.system == s and r.tally]
        if not runs and s == POOL:
            continue
        lost = sum(r.tally["lost"] + r.tally["unexpected"] for r in runs if r.tally)
        dup = sum(r.tally["duplicated"] for r in runs if r.tally)
        p50, p99 = (statistics.median(values(records, "latency", s, k).values() or [0.0]) for k in ("p50", "p99"))
        lat = f"{p50:.2f} / {p99:.2f}" if values(records, "latency", s, "p50") else ""
        crash = crash_mark(s, records).replace("[green]", "").replace("[red]", "").replace("[/]", "")
        out.append(
            f"| {LABELS[s]} | {med('queue', s, 'enqueue')} | {med('clients', s, 'clients')} | "
            f"{med('queue', s, 'drain')} | {med('cpu', s, 'efficiency')} | {lat} | {lost} / {dup} | {crash} |"
        )
    return "\n".join(out) + "\n"
