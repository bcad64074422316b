"""What `ajc` reads and prints: argument types, records as JSON, and records as rich tables."""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ajq.client.models import CronInfo, QueueInfo, TaskInfo, WorkerInfo
from ajq.protocol import WAITING_STATES, TaskState, options

STATES = [s.value for s in TaskState]
UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}  # largest first, for format_duration
SHORT_STATES = {
    "scheduled": "sched",
    "blocked": "blocked",
    "new": "new",
    "active": "active",
    "retry": "retry",
    "complete": "done",
    "terminated": "term",
    "expired": "exp",
    "dead": "dead",
    "unreachable": "unreach",
}
ERROR_CHARS = 60  # a last error in a listing is cut to this


# -- argument types ---------------------------------------------------------------------------


parse_duration = options.arg(options.parse_duration)  # "90", "90s", "10m", "1h30m" or "2d" in seconds


def format_duration(seconds: float) -> str:
    """Seconds as "1h", "1m30s" or "2d3h": largest units first, zero parts left out."""
    if seconds <= 0:
        return f"{seconds:g}s"
    parts: list[str] = []
    rest = seconds
    for unit, size in UNITS.items():
        n = int(rest // size) if unit != "s" else rest
        if n:
            parts.append(f"{n:g}{unit}")
            rest -= n * size
    return "".join(parts) or f"{seconds:g}s"


def parse_time(text: str) -> datetime:
    """An ISO 8601 time such as 2030-01-31T09:00:00Z; one without an offset is taken as UTC."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid time {text!r}: use ISO 8601, e.g. 2030-01-31T09:00:00Z (UTC unless an offset is given)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def parse_deadline(text: str) -> datetime:
    """A deadline: an ISO 8601 time, or a duration (10m, 2h) counted from now."""
    try:
        return datetime.fromtimestamp(time.time() + options.parse_duration(text), tz=UTC)
    except ValueError:
        pass
    try:
        return parse_time(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"invalid deadline {text!r}: use a duration from now (90s, 10m, 2h) or an ISO 8601 time"
        ) from None


def parse_tries(text: str) -> int:
    """A try limit: a positive integer, or -1 / "unlimited" for no limit."""
    if text.strip().lower() in ("unlimited", "-1"):
        return -1
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"invalid tries {text!r}: use a positive integer, -1 or unlimited")
    return n


positive_float = options.seconds_arg(example="2.5")  # a timeout or an interval, in seconds
positive_int = options.count_arg(minimum=1, example="20")
count_or_zero = options.count_arg(minimum=0, example="10000")


# -- values as JSON ---------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A payload or result made JSON-safe: bytes as base64, datetimes as ISO, odd map keys as str."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k if isinstance(k, str) else json.dumps(plain(k)): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def queue_json(q: QueueInfo) -> dict[str, Any]:
    """A queue for --json, with a count for every state (0 where the broker sent none)."""
    return {
        "name": q.name,
        "max_concurrent": q.max_concurrent,
        "max_run_time_s": q.max_run_time_s,
        "max_tries": q.max_tries,
        "paused": q.paused,
        "workers": q.workers,
        "retention_s": q.retention_s,
        "dead_max": q.dead_max,
        "dead_retention_s": q.dead_retention_s,
        "backoff_s": q.backoff_s,
        "created_at": plain(q.created_at),
        "counts": {s: q.counts.get(s, 0) for s in STATES},
    }


def record_json(record: TaskInfo | WorkerInfo | CronInfo) -> dict[str, Any]:
    """A task, worker or cron for --json: every field of its dataclass, JSON-safe."""
    return {f.name: plain(getattr(record, f.name)) for f in fields(record)}


# -- values as text ---------------------------------------------------------------------------


def when(value: datetime | float | None) -> str:
    """A time to the second in UTC, "-" when not set."""
    if value is None:
        return "-"
    if not isinstance(value, datetime):
        value = datetime.fromtimestamp(value, tz=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def one_line(text: str | None, limit: int = ERROR_CHARS) -> str:
    """An error message on one line, cut to `limit` characters with "…"; "" for none."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def waiting(q: QueueInfo) -> int:
    """Tasks of a queue that have not started yet."""
    return sum(q.counts.get(s, 0) for s in WAITING_STATES)


def queue_settings(q: QueueInfo) -> list[str]:
    """A queue's limits as display strings, in table order."""
    tries = "unlimited" if q.max_tries < 0 else str(q.max_tries)
    return [str(q.max_concurrent), format_duration(q.max_run_time_s), tries, yes_no(q.paused), str(q.workers)]


def queue_pairs(q: QueueInfo) -> list[tuple[str, str]]:
    """A queue's fields as display strings, for the vertical table."""
    names = ["max_concurrent", "max_run_time", "max_tries", "paused", "workers"]
    retention = [
        ("retention", format_duration(q.retention_s)),
        ("dead_max", str(q.dead_max)),
        ("dead_retention", format_duration(q.dead_retention_s)),
        ("backoff", format_duration(q.backoff_s)),
        ("created_at", when(q.created_at)),
    ]
    counts = [(s, str(q.counts.get(s, 0))) for s in STATES]
    return [("name", q.name), *zip(names, queue_settings(q), strict=True), *retention, *counts]


def show(name: str, value: Any) -> str:
    """One task field for the table; "-" for a field not set yet."""
    if name in ("payload", "result"):
        return json.dumps(plain(value), ensure_ascii=False)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    return "-" if value is None else str(value)


def record_pairs(record: TaskInfo | CronInfo) -> list[tuple[str, str]]:
    """A task's or cron's fields as display strings: payload and result as JSON, times to the second."""
    return [(f.name, show(f.name, getattr(record, f.name))) for f in fields(record)]


def worker_queues(w: WorkerInfo) -> str:
    """A worker's queues with their weights: "critical=6,default=3"."""
    weights = w.weights or [1] * len(w.queues)
    return ",".join(f"{q}={n}" for q, n in zip(w.queues, weights, strict=False))


def info_pairs(data: dict[str, Any]) -> list[tuple[str, str]]:
    """The broker's info map as display strings: times readable, counts as name=n."""
    pairs: list[tuple[str, str]] = []
    for key, value in data.items():
        if key == "started_at" and isinstance(value, int | float):
            text = when(value)
        elif key == "uptime_s" and isinstance(value, int | float):
            text = format_duration(round(value))
        elif isinstance(value, dict):
            text = " ".join(f"{k}={v}" for k, v in value.items()) or "-"
        else:
            text = "-" if value is None else str(value)
        pairs.append((key, text))
    return pairs


# -- rows for listings ------------------------------------------------------------------------

QUEUE_HEADERS = ["name", "conc", "run", "tries", "paused", "workers", *SHORT_STATES.values()]
TASK_HEADERS = ["id", "queue", "type", "state", "tries", "created (UTC)", "last error"]
WORKER_HEADERS = ["id", "host", "pid", "procs", "queues", "strict", "running", "paused", "since (UTC)"]
CRON_HEADERS = ["name", "cron", "type", "queue", "next run (UTC)", "last run (UTC)", "last task"]


def queue_row(q: QueueInfo) -> list[str]:
    return [q.name, *queue_settings(q), *(str(q.counts.get(s, 0)) for s in STATES)]


def task_row(t: TaskInfo) -> list[str]:
    return [t.id, t.queue, t.type, t.state, str(t.tries), when(t.created_at), one_line(t.last_error)]


def worker_row(w: WorkerInfo) -> list[str]:
    return [
        w.worker_id, w.host, str(w.pid), str(w.procs), worker_queues(w), yes_no(w.strict), str(len(w.running)),
        yes_no(w.paused), when(w.since),
    ]  # fmt: skip


def cron_row(c: CronInfo) -> list[str]:
    return [c.name, c.cron, c.type, c.queue, when(c.next_run), when(c.last_run), c.last_task or "-"]


# -- output -----------------------------------------------------------------------------------


def print_json(data: Any) -> None:
    """Machine-readable output: JSON on stdout and nothing else."""
    print(json.dumps(data, indent=2, ensure_ascii=False))


def console() -> Console:
    """A console for tables; when stdout is not a terminal, wide enough that no cell is cut."""
    return Console(width=None if sys.stdout.isatty() else 1000)


def pairs_table(title: str, pairs: list[tuple[str, str]]) -> Table:
    """One record as a vertical key/value table; Text cells so values are never read as markup."""
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in pairs:
        table.add_row(Text(key), Text(value))
    return table


def rows_table(title: str, headers: list[str], rows: Iterable[list[str]], numeric: Iterable[str] = ()) -> Table:
    """A listing, a row per record; the `numeric` columns right-aligned, long cells folded."""
    right = set(numeric)
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True, pad_edge=False)
    for header in headers:
        table.add_column(header, justify="right" if header in right else "left", overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def print_pairs(title: str, pairs: list[tuple[str, str]]) -> None:
    console().print(pairs_table(title, pairs))


def print_rows(title: str, headers: list[str], rows: Iterable[list[str]], numeric: Iterable[str] = ()) -> None:
    console().print(rows_table(title, headers, rows, numeric))
