"""What ran and what was acknowledged, and the figures every fault test ends with.

Runs come from tests/apps/faults.py's runs.log. A run's known span is from its start to its end,
or, for a run that was killed, to its last tick: another run of the same task that starts inside
that span is an overlap (two handlers of one task at once)."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from ajq import Client, TaskInfo

FIGURES_ENV = "AJQ_FAULT_FIGURES"  # a JSON-lines file the figures are appended to, if set


@dataclass
class Run:
    """One try of one task in one process, as its handler recorded it."""

    task_id: str
    try_number: int
    token: int
    pid: int
    start: float
    last: float  # the last moment it was seen working (its end, or its last tick)
    ended: bool = False


def runs(test_dir: Path) -> list[Run]:
    """Every run in runs.log, in order of start."""
    path = test_dir / "runs.log"
    by_key: dict[tuple[str, int, int], Run] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            what, task_id, try_number, token, pid, when = line.split()
            key = (task_id, int(token), int(pid))
            if what == "start":
                by_key[key] = Run(task_id, int(try_number), int(token), int(pid), float(when), float(when))
            elif key in by_key:
                run = by_key[key]
                run.last = float(when)
                run.ended = run.ended or what == "end"
    return sorted(by_key.values(), key=lambda r: r.start)


@dataclass(frozen=True)
class Figures:
    """The one line a fault test ends with. Lost and unexpected must be 0, overlap 0 unless SPEC says."""

    test: str
    faults: str
    acknowledged: int
    lost: int
    duplicated: int  # runs that reached their end, beyond one per task
    overlap: int  # pairs of runs of one task that were working at the same moment
    unexpected: int  # runs of a task never acknowledged, or begun after the task was final
    recovery_s: float | None = None

    def line(self) -> str:
        recovery = "-" if self.recovery_s is None else f"{self.recovery_s:.2f}s"
        return (
            f"figures {self.test}: faults={self.faults} acknowledged={self.acknowledged} lost={self.lost} "
            f"duplicated={self.duplicated} overlap={self.overlap} unexpected={self.unexpected} recovery={recovery}"
        )

    def report(self) -> None:
        """Print the line, and append it to $AJQ_FAULT_FIGURES for the README's table."""
        print(self.line())
        path = os.environ.get(FIGURES_ENV)
        if path:
            with open(path, "a") as f:
                f.write(json.dumps(asdict(self)) + "\n")


def count(
    test: str,
    faults: str,
    acknowledged: Iterable[str],
    final: Mapping[str, float | None],
    all_runs: list[Run],
    *,
    recovery_s: float | None = None,
) -> Figures:
    """Figures from what was acknowledged and what ran. `final` maps each acknowledged task that
    reached a final state to when it did (broker wall time; None: it never did, so it is lost)."""
    acked = set(acknowledged)
    lost = sum(1 for t in acked if final.get(t) is None)
    per_task: defaultdict[str, list[Run]] = defaultdict(list)
    for run in all_runs:
        per_task[run.task_id].append(run)
    duplicated = sum(max(0, sum(r.ended for r in rs) - 1) for rs in per_task.values())
    overlap = sum(_overlaps(rs) for rs in per_task.values())
    odd = [r for r in all_runs if r.task_id not in acked or _after_final(r, final.get(r.task_id))]
    for r in odd:
        print("unexpected run", r, final.get(r.task_id))
    unexpected = len(odd)
    return Figures(test, faults, len(acked), lost, duplicated, overlap, unexpected, recovery_s)


def _overlaps(task_runs: list[Run]) -> int:
    """Pairs of runs whose known spans intersect (sorted by start)."""
    return sum(1 for i, a in enumerate(task_runs) for b in task_runs[i + 1 :] if b.start < a.last)


def _after_final(run: Run, final_at: float | None) -> bool:
    return final_at is not None and run.start > final_at + 0.001  # the broker's clock is this host's


def all_tasks(client: Client, queue: str) -> list[TaskInfo]:
    """Every task of `queue`, paged newest first (each id once, unless the broker stored it twice)."""
    out: list[TaskInfo] = []
    before = None
    while True:
        page = client.tasks(queue=queue, limit=1000, before=before)
        out += page
        if len(page) < 1000:
            return out
        before = page[-1].seq


def finals(tasks: Iterable[TaskInfo], state: str | None = None) -> dict[str, float | None]:
    """Task id -> when it reached a final state (`state` only, if given), else None."""
    out: dict[str, float | None] = {}
    for t in tasks:
        done = t.done and (state is None or t.state == state) and t.finished_at is not None
        out[t.id] = t.finished_at.timestamp() if done and t.finished_at else None
    return out


def peak(all_runs: Iterable[Run]) -> int:
    """The most runs (of any tasks) working at one moment: held to a queue's max_concurrent."""
    marks = sorted(m for r in all_runs for m in ((r.start, 1), (r.last, -1)))
    now = top = 0
    for _, delta in marks:
        now += delta
        top = max(top, now)
    return top
