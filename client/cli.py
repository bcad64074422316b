"""`ajc`: the admin command line: list, view and configure queues; add and view tasks."""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
from collections.abc import Callable
from dataclasses import fields
from datetime import datetime
from typing import Any

import zmq
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from client import calls
from client.client import Client
from client.errors import ClientError
from client.models import QueueInfo, TaskInfo
from protocol import TaskState

STATES = [s.value for s in TaskState]
UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
SHORT_HEADERS = ["conc", "run", "tries", "paused", "workers", "new", "active", "retry", "done", "term", "exp", "dead"]
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([dhms])")

Command = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """A bad argument found after parsing (e.g. a payload that is not JSON): exit 2, one line."""


# -- argument types ---------------------------------------------------------------------------


def parse_duration(text: str) -> float:
    """Seconds in "90", "90s", "10m", "1h30m" or "2d": how people write queue run times."""
    s = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", s):
        return float(s)
    if not s or _DURATION.sub("", s) != "":
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use e.g. 90, 90s, 10m, 1h30m or 2d")
    return sum(float(n) * UNITS[u] for n, u in _DURATION.findall(s))


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


def positive_float(text: str) -> float:
    """A timeout in seconds, which must be above zero."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"invalid seconds {text!r}: use a number above 0")
    return value


# -- values as JSON and as text ---------------------------------------------------------------


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
        "counts": {s: q.counts.get(s, 0) for s in STATES},
    }


def task_json(t: TaskInfo) -> dict[str, Any]:
    """A task for --json; every field of TaskInfo, JSON-safe."""
    return {f.name: plain(getattr(t, f.name)) for f in fields(TaskInfo)}


def queue_pairs(q: QueueInfo) -> list[tuple[str, str]]:
    """A queue's fields as display strings, in table order."""
    tries = "unlimited" if q.max_tries < 0 else str(q.max_tries)
    pairs = [
        ("name", q.name),
        ("max_concurrent", str(q.max_concurrent)),
        ("max_run_time", format_duration(q.max_run_time_s)),
        ("max_tries", tries),
        ("paused", "yes" if q.paused else "no"),
        ("workers", str(q.workers)),
    ]
    return pairs + [(s, str(q.counts.get(s, 0))) for s in STATES]


def task_pairs(t: TaskInfo) -> list[tuple[str, str]]:
    """A task's fields as display strings: payload and result as JSON, times to the second."""
    return [(f.name, show(f.name, getattr(t, f.name))) for f in fields(TaskInfo)]


def show(name: str, value: Any) -> str:
    """One task field for the table; "-" for a field not set yet."""
    if name in ("payload", "result"):
        return json.dumps(plain(value), ensure_ascii=False)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    return "-" if value is None else str(value)


# -- output -----------------------------------------------------------------------------------


def print_json(data: Any) -> None:
    """Machine-readable output: JSON on stdout and nothing else."""
    print(json.dumps(data, indent=2, ensure_ascii=False))


def console() -> Console:
    """A console for tables; when stdout is not a terminal, wide enough that no cell is cut."""
    return Console(width=None if sys.stdout.isatty() else 1000)


def print_pairs(title: str, pairs: list[tuple[str, str]]) -> None:
    """One record as a vertical key/value table."""
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in pairs:
        table.add_row(Text(key), Text(value))
    console().print(table)


def print_queues(queues: list[QueueInfo]) -> None:
    """All queues as one table, a row each; Text cells so names are never read as markup."""
    table = Table(title="queues", box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True, pad_edge=False)
    table.add_column("name", overflow="fold")
    for header in SHORT_HEADERS:
        table.add_column(header, justify="right")
    for q in queues:
        table.add_row(*(Text(value) for _, value in queue_pairs(q)))
    console().print(table)


def show_queue(q: QueueInfo, as_json: bool) -> int:
    """Print one queue, vertical table or JSON."""
    if as_json:
        print_json(queue_json(q))
    else:
        print_pairs(f"queue {q.name}", queue_pairs(q))
    return 0


# -- commands ---------------------------------------------------------------------------------


def connect(args: argparse.Namespace) -> Client:
    """A client for the --broker and --timeout given."""
    return Client(args.broker, timeout=args.timeout)


def queue_ls(args: argparse.Namespace) -> int:
    """`ajc queue ls`: every queue the broker knows."""
    with connect(args) as c:
        queues = sorted(c.queues(), key=lambda q: q.name)
    if args.json:
        print_json([queue_json(q) for q in queues])
    else:
        print_queues(queues)
    return 0


def queue_view(args: argparse.Namespace) -> int:
    """`ajc queue view NAME`: one queue's settings and counts."""
    with connect(args) as c:
        q = c.queue_info(args.name)
    return show_queue(q, args.json)


def queue_configure(args: argparse.Namespace) -> int:
    """`ajc queue configure NAME`: create or change a queue; unset options keep their values."""
    with connect(args) as c:
        q = c.configure_queue(
            args.name, max_concurrent=args.concurrent, max_run_time=args.run_time, max_tries=args.tries
        )
    return show_queue(q, args.json)


def task_add(args: argparse.Namespace) -> int:
    """`ajc task add TYPE [PAYLOAD]`: submit one task; the payload is checked before connecting."""
    try:
        payload = json.loads(args.payload) if args.payload is not None else None
    except json.JSONDecodeError as exc:
        raise UsageError(f"PAYLOAD is not valid JSON: {exc}") from None
    with connect(args) as c:
        sub = c.submit(args.type, payload, queue=args.queue, task_id=args.id)
    if args.json:
        print_json({"id": sub.id, "type": sub.type, "queue": sub.queue})
    else:
        print(sub.id)
    return 0


def task_view(args: argparse.Namespace) -> int:
    """`ajc task view ID`: a task's state, payload, result and times."""
    with connect(args) as c:
        t = c.get(args.id)
    if args.json:
        print_json(task_json(t))
    else:
        print_pairs(f"task {t.id}", task_pairs(t))
    return 0


# -- parser and entry point -------------------------------------------------------------------


def command(sub: Any, name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
    """Add a subcommand that runs func and takes --json."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    p.add_argument("--json", action="store_true", help="print JSON to stdout instead of a table")
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree: `ajc [--broker E] [--timeout S] {queue,task} ...`."""
    p = argparse.ArgumentParser(prog="ajc", description="Admin CLI for the ajq broker: queues and tasks.")
    p.add_argument("--broker", help=f"broker endpoint (env AJQ_BROKER; default {calls.DEFAULT_ENDPOINT})")
    p.add_argument("--timeout", type=positive_float, default=10.0, help="seconds to wait for the broker (10)")
    groups = p.add_subparsers(dest="group", required=True, metavar="{queue,task}")
    queue = groups.add_parser("queue", help="list, view and configure queues").add_subparsers(
        dest="action", required=True
    )
    command(queue, "ls", queue_ls, "list all queues")
    command(queue, "view", queue_view, "show one queue").add_argument("name")
    conf = command(queue, "configure", queue_configure, "create or change a queue")
    conf.add_argument("name")
    conf.add_argument("--concurrent", type=int, help="max tasks of this queue running at once")
    conf.add_argument("--run-time", type=parse_duration, help="max run time of one try: 90, 90s, 10m, 1h30m, 2d")
    conf.add_argument("--tries", type=parse_tries, help="max tries per task; -1 or unlimited for no limit")
    task = groups.add_parser("task", help="add and view tasks").add_subparsers(dest="action", required=True)
    add = command(task, "add", task_add, "submit one task")
    add.add_argument("type", help="the task type, as a worker's handler is registered")
    add.add_argument("payload", nargs="?", help="the payload as JSON text (default null)")
    add.add_argument("--queue", default=calls.DEFAULT_QUEUE, help="queue name (default DEFAULT)")
    add.add_argument("--id", help="task id (default: the broker makes one); makes a resubmit safe")
    command(task, "view", task_view, "show one task").add_argument("id")
    return p


def fail(message: str, status: int) -> int:
    """Print one line `ajc: message` to stderr and return the exit status."""
    print(f"ajc: {' '.join(message.split())}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    """Run one ajc command; every expected error becomes one stderr line and a non-zero status."""
    args = build_parser().parse_args(argv)
    func: Command = args.func
    try:
        return func(args)
    except UsageError as exc:
        return fail(str(exc), 2)
    except ClientError as exc:
        return fail(str(exc) or type(exc).__name__, 1)
    except zmq.ZMQError as exc:
        return fail(f"cannot reach the broker at {calls.endpoint(args.broker)}: {exc}", 1)
    except KeyboardInterrupt:
        return fail("interrupted", 130)


if __name__ == "__main__":
    sys.exit(main())
