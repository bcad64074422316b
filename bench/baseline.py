"""The regression guard: each run is compared with the last committed figures (bench/baseline.json),
and a figure that fell by more than MAX_DROP is named. The baseline changes only with a commit that
says why (`python -m bench.run --quick --repeat 3 --write-baseline`).

Only figures with a direction are compared: those with a target (its `>=` or `<=`) and the rates
and latencies (`tasks/s` higher, `ms` lower); shares and calibration figures are not. The baseline
holds one set of medians per mode (quick, full): a quick run is compared with a quick baseline."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from bench.report import Metric, fmt

MAX_DROP = 0.20  # a figure worse than the baseline by more than this fraction is a regression


@dataclass(frozen=True)
class Change:
    """One figure against its baseline: `drop` is how much worse, as a fraction (negative: better)."""

    key: str
    label: str
    unit: str
    baseline: float
    now: float
    drop: float

    @property
    def regressed(self) -> bool:
        return self.drop > MAX_DROP


def direction(m: Metric) -> str | None:
    """'higher' or 'lower' is better for this figure; None: not compared."""
    if m.spec.target is not None:
        return "higher" if m.spec.target.op == ">=" else "lower"
    if m.spec.unit == "tasks/s":
        return "higher"
    if m.spec.unit == "ms" and m.spec.bench in ("latency", "delayed", "chain", "cancel"):
        return "lower"
    return None


def compare(metrics: list[Metric], baseline: dict[str, float]) -> list[Change]:
    """Every figure with a direction and a baseline value, with how much worse it is now."""
    out: list[Change] = []
    for m in metrics:
        better, old = direction(m), baseline.get(m.spec.key)
        if better is None or old is None or old <= 0:
            continue
        drop = (old - m.median) / old if better == "higher" else (m.median - old) / old
        out.append(Change(m.spec.key, m.spec.label, m.spec.unit, old, m.median, drop))
    return out


def load(path: Path, mode: str) -> dict[str, float] | None:
    """The baseline medians for `mode`, or None if there are none yet."""
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    figures = data.get(mode, {}).get("medians")
    return {k: float(v) for k, v in figures.items()} if isinstance(figures, dict) else None


def write(path: Path, mode: str, metrics: list[Metric], about: dict[str, Any]) -> None:
    """Make this run's medians the baseline for `mode` (the other mode's are kept)."""
    data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    data[mode] = {**about, "medians": {m.spec.key: m.median for m in metrics if direction(m) is not None}}
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def table(changes: list[Change], mode: str, path: Path) -> Table:
    """The comparison: baseline, now, the change, and the regressions marked."""
    t = Table(title=f"against {path.name} ({mode}): worse by more than {MAX_DROP:.0%} is a regression")
    for col in ("figure", "baseline", "now", "unit", "change", ""):
        t.add_column(col, justify="left" if col in ("figure", "unit", "") else "right")
    for c in changes:
        mark = "[red]REGRESSION[/]" if c.regressed else ""
        t.add_row(c.label, fmt(c.baseline, c.unit), fmt(c.now, c.unit), c.unit, f"{-c.drop:+.0%}", mark)
    return t
