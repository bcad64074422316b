"""The benchmarks' figures: targets, values over repeats, the rich table and the JSON report."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table


@dataclass(frozen=True)
class Target:
    """A goal for a figure: at least (>=) or at most (<=) a value."""

    op: str
    value: float

    def met(self, x: float) -> bool:
        """Whether `x` reaches the goal."""
        return x >= self.value if self.op == ">=" else x <= self.value


@dataclass(frozen=True)
class Spec:
    """One figure a benchmark reports: its key in a run's dict, label, unit and optional target."""

    bench: str
    key: str
    label: str
    unit: str
    target: Target | None = None


@dataclass
class Metric:
    """A figure's values over the repeats, and how its median compares with the target."""

    spec: Spec
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        """The median over the repeats."""
        return statistics.median(self.values)

    @property
    def met(self) -> bool | None:
        """None when there is no target."""
        return self.spec.target.met(self.median) if self.spec.target else None

    def to_json(self) -> dict[str, Any]:
        """The figure as a JSON object."""
        return {
            "bench": self.spec.bench,
            "key": self.spec.key,
            "label": self.spec.label,
            "unit": self.spec.unit,
            "median": self.median,
            "min": min(self.values),
            "max": max(self.values),
            "values": self.values,
            "target": asdict(self.spec.target) if self.spec.target else None,
            "met": self.met,
        }


Run = dict[str, float]
LOAD = "other_load"  # in a Run: CPUs busy with other processes during the measurement


def percentile(xs: list[float], p: float) -> float:
    """The p-th percentile of `xs`, interpolating linearly between the closest ranks."""
    s = sorted(xs)
    k = (len(s) - 1) * p / 100
    lo = math.floor(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


@dataclass
class Results:
    """Every figure over the repeats, the other load seen per benchmark, and the failures."""

    metrics: dict[str, Metric]
    loads: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def add(self, bench: str, run: Run) -> None:
        """Record one run of `bench`."""
        for key, value in run.items():
            if key == LOAD:
                self.loads.setdefault(bench, []).append(value)
            else:
                self.metrics[key].values.append(value)

    def measured(self) -> list[Metric]:
        """The figures that have at least one value."""
        return [m for m in self.metrics.values() if m.values]


def fmt(x: float, unit: str) -> str:
    """A figure with the precision its unit deserves."""
    return f"{x:,.0f}" if unit == "tasks/s" else f"{x:,.2f}"


def table(results: Results, machine: dict[str, Any], repeat: int, quick: bool) -> Table:
    """The results as a rich table: median, min and max over the repeats, the target, and whether it is met."""
    title = f"ajq benchmarks ({'quick' if quick else 'full'}, {repeat} run{'s' * (repeat > 1)} each)"
    caption = (
        f"{machine['cpu_count']} CPUs, Python {machine['python']}, {machine['platform']}. "
        "other load: median CPUs busy with processes outside the benchmark while it was measured."
    )
    t = Table(title=title, caption=caption)
    for col in ("bench", "figure", "median", "min", "max", "unit", "target", "met", "other load"):
        t.add_column(col, justify="left" if col in ("bench", "figure", "unit", "met") else "right")
    shown: set[str] = set()
    for m in results.measured():
        u, tg, bench = m.spec.unit, m.spec.target, m.spec.bench
        met = "" if m.met is None else ("[green]yes[/]" if m.met else "[red]no[/]")
        target = f"{tg.op} {fmt(tg.value, u)}" if tg else ""
        loads = results.loads.get(bench) if bench not in shown else None
        load = f"{statistics.median(loads):.2f}" if loads else ""
        shown.add(bench)
        t.add_row(
            bench, m.spec.label, fmt(m.median, u), fmt(min(m.values), u), fmt(max(m.values), u), u, target, met, load
        )
    return t


def machine_info() -> dict[str, Any]:
    """CPU count, Python version and platform, for the JSON and the table's caption."""
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
    }


def write_json(path: Path, report: dict[str, Any]) -> None:
    """Write the report to `path`, creating its directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
