"""The process pool: forked children, each with a pipe, replaced when they die or are killed.

We fork on purpose (not spawn): the app's handlers are imported once in the supervisor, and every
child starts with them loaded, so a task costs no import and no process start.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from typing import Any

import msgpack

from worker.child import child_main
from worker.router import Router

PR_SET_PDEATHSIG = 1


@dataclass(eq=False)
class Child:
    pid: int
    conn: Connection
    task: dict[str, Any] | None = None  # the delivery it is running
    deadline: float | None = None  # monotonic: killed if still running then
    started: float = 0.0  # monotonic, when the current task was handed over

    @property
    def fd(self) -> int:
        return self.conn.fileno()


class Pool:
    """`size` children; the supervisor assigns tasks to idle ones and reads their outcomes."""

    def __init__(self, size: int, router: Router) -> None:
        self.size = size
        self.router = router
        self.children: dict[int, Child] = {}  # by pipe fd

    def start(self) -> list[Child]:
        gc.freeze()  # keep the parent's objects out of the children's GC: fewer copied pages
        return [self.spawn() for _ in range(self.size - len(self.children))]

    def spawn(self) -> Child:
        parent_end, child_end = Pipe(duplex=True)
        pid = os.fork()
        if pid == 0:  # the child
            try:
                parent_end.close()
                for other in self.children.values():
                    other.conn.close()
                _die_with_parent()
            finally:
                child_main(child_end, self.router)
        child_end.close()
        child = Child(pid, parent_end)
        self.children[child.fd] = child
        return child

    def idle(self) -> list[Child]:
        return [c for c in self.children.values() if c.task is None]

    def busy(self) -> list[Child]:
        return [c for c in self.children.values() if c.task is not None]

    def assign(self, child: Child, item: dict[str, Any], deadline: float) -> None:
        child.task = item
        child.deadline = deadline
        child.started = time.monotonic()
        child.conn.send_bytes(msgpack.packb(item))

    def read(self, child: Child) -> dict[str, Any] | None:
        """The child's outcome for its task, or None if its pipe closed (it died)."""
        try:
            data = child.conn.recv_bytes()
        except (EOFError, OSError):
            return None
        outcome: dict[str, Any] = msgpack.unpackb(data, raw=False)
        return outcome

    def kill(self, child: Child) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)

    def reap(self, child: Child) -> str:
        """Wait for a dead (or killed) child, forget it, and say how it ended."""
        self.children.pop(child.fd, None)
        child.conn.close()
        try:
            _, status = os.waitpid(child.pid, 0)
        except ChildProcessError:
            return "it ended and was reaped elsewhere"
        return describe_exit(status)

    def stop(self) -> None:
        """Close every pipe (idle children exit on EOF), kill what is left, reap them all."""
        for child in list(self.children.values()):
            child.conn.close()
        for child in list(self.children.values()):
            self.kill(child)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child.pid, 0)
        self.children.clear()


def describe_exit(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        hint = " (out of memory, or killed)" if sig == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exited with code {os.WEXITSTATUS(status)}"


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this child if the supervisor dies, so no orphan runs on."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
