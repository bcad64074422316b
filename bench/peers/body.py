"""The one task body every system runs, and the ledger line it appends for each task.

Every system's worker calls `run(kind, bid, arg)`, where `bid` is the id the bench gave the task.
Each run appends one line to the ledger file named by $AJQ_PEERS_LEDGER (a single O_APPEND write,
so lines from concurrent processes never interleave); the bench reads that file to count how often
each task ran and when it started and ended. The mechanism is the same for every system, so its
cost (one write(2) into the page cache, a few microseconds) is too.

Ledger lines, fields separated by spaces, times as wall-clock seconds:
    E <bid> <kind> <start> <end> <pid>   a task body ended
    B <bid> <start> <pid>                a "hold" task began (the crash workload waits for it)
"""

from __future__ import annotations

import os
import time

LEDGER_ENV = "AJQ_PEERS_LEDGER"
KINDS = ("noop", "stamp", "spin", "hold")

_fd: tuple[int, str, int] | None = None  # (pid, path, fd): reopened in a forked child


def spin(n: int) -> int:
    """Pure-Python CPU work: n loop iterations (the same loop as bench/apps.py's)."""
    x = 0
    for i in range(n):
        x = (x + i * i) % 1_000_003
    return x


def _write(line: str) -> None:
    """Append one line to the ledger with one write(2)."""
    global _fd
    path, pid = os.environ[LEDGER_ENV], os.getpid()
    if _fd is None or _fd[0] != pid or _fd[1] != path:
        _fd = (pid, path, os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
    os.write(_fd[2], line.encode())


def run(kind: str, bid: str, arg: float) -> float | None:
    """Run one task: noop does nothing, stamp returns its start time, spin loops `arg` times, hold
    sleeps `arg` seconds. Records the task in the ledger when it ends."""
    start = time.time()
    if kind == "spin":
        spin(int(arg))
    elif kind == "hold":
        _write(f"B {bid} {start:.6f} {os.getpid()}\n")
        time.sleep(arg)
    elif kind not in KINDS:
        raise ValueError(f"unknown task kind {kind!r}: use one of {', '.join(KINDS)}")
    _write(f"E {bid} {kind} {start:.6f} {time.time():.6f} {os.getpid()}\n")
    return start if kind == "stamp" else None
