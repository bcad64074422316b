"""`python -m bench.step`: the broker's step alone, in this process: no sockets, no other process.

What one step costs in Python and SQLite, apart from ZeroMQ and the fsync: a SUBMIT of one task per
step (the fixed cost of a step), then a drain where a worker completes what it was delivered and
asks for more (the cost per task). The database is on /dev/shm with `synchronous=OFF` unless told
otherwise, so the disk does not blur the comparison of two commits run one after the other.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ajq.broker.config import BrokerConfig
from ajq.broker.core import Broker
from ajq.broker.store import Store
from ajq.protocol import Kind, decode, encode, encode_value
from ajq.protocol.clock import Now
from bench.report import write_json

CLIENT, WORKER = b"\x00client", b"w1"


def _broker(where: str, synchronous: str) -> tuple[Broker, Store]:
    path = str(Path(tempfile.mkdtemp(dir=where)) / "step.db")
    store = Store(path, synchronous)
    return Broker(store, BrokerConfig(db=path, heartbeat_s=1000.0), Now(1000.0, 1.7e9)), store


def single_submits(b: Broker, n: int) -> float:
    """Microseconds of wall time per step of one one-task SUBMIT."""
    now, payload = Now(1000.0, 1.7e9), encode_value({"n": 1})
    msgs = [[CLIENT, encode(Kind.SUBMIT, i + 1, {"queue": "Q", "tasks": [{"type": "t", "payload": payload}]})]
            for i in range(n)]  # fmt: skip
    t0 = time.perf_counter()
    for msg in msgs:
        b.step([msg], now)
    return (time.perf_counter() - t0) / n * 1e6


def drain(b: Broker, n: int) -> float:
    """Microseconds per task while one worker of one process completes `n` queued tasks."""
    now, corr = Now(1000.0, 1.7e9), 10
    hello = {"worker_id": "w1", "host": "h", "pid": 1, "procs": 1, "queues": ["Q"]}
    out = b.step([[WORKER, encode(Kind.HELLO, 1, hello)], [WORKER, encode(Kind.CREDIT, 0, {"n": 65})]], now)
    done, t0 = 0, time.perf_counter()
    while done < n:
        frames = [decode([o.data], validate=False) for o in out]
        tasks = [t for f in frames if f.kind is Kind.DELIVER for t in f.body["tasks"]]
        if not tasks:
            break
        results = [{"id": t["id"], "token": t["token"], "outcome": "complete"} for t in tasks]
        corr += 1
        out = b.step([[WORKER, encode(Kind.RESULTS, corr, {"results": results, "credit": len(results)})]], now)
        done += len(tasks)
    return (time.perf_counter() - t0) / max(done, 1) * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.step", description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5, help="runs; the table shows the median, min and max")
    p.add_argument("-n", type=int, default=5_000, help="steps of the submit run, tasks of the drain")
    p.add_argument("--dir", default="/dev/shm", help="where the database goes (a real disk: /tmp)")
    p.add_argument("--synchronous", default="OFF", help="SQLite's synchronous setting (ajbroker's default: FULL)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "step.json")
    args = p.parse_args(argv)
    runs: list[tuple[float, float]] = []
    for _ in range(args.repeat):
        b, store = _broker(args.dir, args.synchronous)
        try:
            runs.append((single_submits(b, args.n), drain(b, args.n)))
        finally:
            store.close()
    t = Table(title=f"the broker's step in process ({args.synchronous} on {args.dir}, {args.repeat} runs)")
    for col in ("figure", "median", "min", "max", "unit"):
        t.add_column(col, justify="left" if col in ("figure", "unit") else "right")
    figures = {"single_submit_step_us": [r[0] for r in runs], "drain_per_task_us": [r[1] for r in runs]}
    for key, values in figures.items():
        t.add_row(key, f"{statistics.median(values):.1f}", f"{min(values):.1f}", f"{max(values):.1f}", "us")
    Console().print(t)
    write_json(args.out, {"dir": args.dir, "synchronous": args.synchronous, "n": args.n, "runs": figures})
    return 0


if __name__ == "__main__":
    sys.exit(main())
