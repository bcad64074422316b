"""The README's demo: a broker and a worker on the defaults, a few tasks submitted, results shown.

Runs `ajbroker` (tcp://127.0.0.1:7480, ./ajq.db) and `ajworker --procs auto` as child processes,
submits tasks through the client, prints what happened to each, then stops both.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ajq import Client, ClientError

ENDPOINT = "tcp://127.0.0.1:7480"
ROOT = Path(__file__).resolve().parent.parent
console = Console(width=max(110, Console().width))


def start(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, *args], cwd=ROOT)


def wait_until(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: timed out waiting for {what}")
        time.sleep(0.05)


def broker_up(c: Client) -> bool:
    try:
        c.queues(timeout=0.3)
        return True
    except ClientError:
        return False


def main() -> int:
    with Client(ENDPOINT, timeout=0.5) as probe:
        if broker_up(probe):
            console.print(f"[red]demo: a broker already answers at {ENDPOINT}; stop it first[/red]")
            return 1
    broker = start(["-m", "ajq.broker"])
    worker = None
    try:
        with Client(ENDPOINT) as c:
            wait_until(lambda: broker_up(c), 15, "the broker")
            worker = start(
                [
                    "-m",
                    "ajq.worker",
                    "--procs",
                    "auto",
                    "--queue",
                    "EMAIL",
                    "--queue",
                    "DEFAULT",
                    "examples.demo_tasks:router",
                ]
            )
            wait_until(lambda: len(c.workers()) > 0, 15, "the worker")
            show(c)
    finally:
        for proc in (worker, broker):
            if proc is not None:
                proc.terminate()
                proc.wait(15)
    return 0


def show(c: Client) -> None:
    tasks = [
        c.submit("email:new", {"to": "a@example.com"}, queue="EMAIL"),
        c.submit("email:new", {"subject": "no recipient"}, queue="EMAIL"),
        c.submit("email:bounce", {"to": "b@example.com"}, queue="EMAIL"),
        c.submit("hash", {"seed": "ajq", "rounds": 200_000}),
        c.submit("report:daily", {"day": "2026-11-25"}),
    ]
    ids = c.submit_many([("hash", {"seed": i, "rounds": 1000}) for i in range(1000)])
    table = Table(title="ajq demo: what happened to each task")
    for col in ("id", "type", "queue", "state", "tries", "result / error"):
        table.add_column(col)
    for t in tasks:
        info = c.wait(t.id, timeout=60)
        outcome = info.result if info.state == "complete" else info.last_error
        table.add_row(info.id, info.type, info.queue, info.state, str(info.tries), str(outcome)[:60])
    console.print(table)
    started = time.monotonic()
    last = c.wait(ids[-1], timeout=120)
    done = c.queue_info("DEFAULT").counts.get("complete", 0)
    console.print(
        f"1,000 hash tasks: last one {last.state}; DEFAULT has {done} complete tasks "
        f"(waited {time.monotonic() - started:.2f}s). Database: ./ajq.db"
    )


if __name__ == "__main__":
    sys.exit(main())
