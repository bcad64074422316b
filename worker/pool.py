"""The process pool: forked children, each with a pipe, replaced when they die or are killed.

We fork on purpose (not spawn): the app's handlers are imported once in the supervisor, and every
child starts with them loaded, so a task costs no import and no process start. A child is retired
(and replaced) after `max_tasks` tasks or when its RSS is over `max_memory_mb`, checked between tasks:
a leaky handler costs a fork now and then, never the worker. Given a `watch` (the supervisor's
poller), the pool registers each child's pipe as it forks the child and unregisters it as it forgets
the child, so what is polled is always the pipes of the children it has.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import math
import os
import signal
from dataclasses import dataclass
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from typing import Any, Protocol

import msgpack
import psutil  # type: ignore[import-untyped]
import zmq
from nacl.signing import VerifyKey

from ajq.worker.child import child_main
from ajq.worker.router import Router
from ajq.worker.watchdog import shared_kill_at

PR_SET_PDEATHSIG = 1
EXIT_WAIT_S = 1.0  # a child whose pipe closed is reported dead this long after at the latest


@dataclass(eq=False)
class Child:
    """One forked process, its pipe, and the task it runs (None when idle)."""

    pid: int
    conn: Connection
    kill_at: Any  # shared double (watchdog.shared_kill_at): the child kills itself then (monotonic)
    task: dict[str, Any] | None = None  # the delivery it is running
    deadline: float | None = None  # monotonic: killed if still running then (max_run_time, task.extend)
    fence: float = math.inf  # monotonic: the broker's lease surely holds until then (SPEC 6.1)
    started: float = 0.0  # monotonic, when the current task was handed over
    done: int = 0  # tasks it has reported an outcome for
    error_handled: bool = False  # the error handler ran in the child for the current try
    probe: Any = None  # psutil.Process, made on first use

    @property
    def fd(self) -> int:
        """The pipe's file descriptor: the key in Pool.children and in the poller."""
        return self.conn.fileno()


@dataclass(frozen=True, slots=True)
class Extend:
    """The handler called task.extend(seconds) for the lease `token`; the task goes on."""

    seconds: float
    token: int


@dataclass(frozen=True, slots=True)
class ErrorHandlerRuns:
    """The error handler runs in the child for the lease `token`; the task goes on until its outcome."""

    token: int


Outcome = dict[str, Any]  # {"outcome": ..., "result"?, "error"?}: ends the task
ChildMessage = Outcome | Extend | ErrorHandlerRuns


class Watch(Protocol):
    """What polls the children's pipes (a zmq.Poller)."""

    def register(self, socket: Any, flags: int = ...) -> None: ...

    def unregister(self, socket: Any) -> None: ...


class Pool:
    """`size` children; the supervisor assigns tasks to idle ones and reads their outcomes."""

    def __init__(
        self, size: int, router: Router, max_tasks: int = 0, max_memory_mb: float = 0.0,
        verify: VerifyKey | None = None, watch: Watch | None = None,
    ) -> None:  # fmt: skip
        self.size = size
        self.watch = watch  # told of every pipe opened and closed
        self.router = router
        self.verify = verify  # tasks must carry a signature this key checks (protocol/signing.py)
        self.max_tasks = max_tasks  # 0: no limit
        self.max_memory_mb = max_memory_mb  # 0: no limit
        self.children: dict[int, Child] = {}  # by pipe fd
        self.retired: list[int] = []  # pids of retired or killed children not reaped yet
        self._dying: dict[int, tuple[dict[str, Any] | None, bool, float]] = {}  # pid -> (task, handled, since)

    def start(self) -> list[Child]:
        """Fork the missing children (all of them at start-up)."""
        gc.freeze()  # keep the parent's objects out of the children's GC: fewer copied pages
        return [self.spawn() for _ in range(self.size - len(self.children))]

    def spawn(self) -> Child:
        """Fork one child with the app already imported; it serves its pipe until EOF."""
        parent_end, child_end = Pipe(duplex=True)
        kill_at = shared_kill_at()
        pid = os.fork()
        if pid == 0:  # the child
            try:
                parent_end.close()
                for other in self.children.values():
                    other.conn.close()
                _die_with_parent()
            finally:
                child_main(child_end, self.router, kill_at, self.verify)
        child_end.close()
        child = Child(pid, parent_end, kill_at)
        self.children[child.fd] = child
        if self.watch is not None:
            self.watch.register(child.fd, zmq.POLLIN)
        return child

    def idle(self) -> list[Child]:
        """Children with no task."""
        return [c for c in self.children.values() if c.task is None]

    def busy(self) -> list[Child]:
        """Children running a task."""
        return [c for c in self.children.values() if c.task is not None]

    def assign(
        self, child: Child, item: dict[str, Any], deadline: float, fence: float, kill_at: float, now: float
    ) -> None:
        """Hand `item` to an idle child at `now`: the supervisor kills it at `deadline`, it kills itself
        at `kill_at` (all monotonic; `fence` is when the broker's lease may end)."""
        child.task = item
        child.deadline = deadline
        child.fence = fence
        child.kill_at.value = kill_at  # before the task is sent: the child reads it when the task arrives
        child.started = now
        child.error_handled = False
        child.conn.send_bytes(msgpack.packb(item))

    def read(self, child: Child) -> ChildMessage | None:
        """The child's next message (an outcome ends its task), or None if its pipe closed (it died)."""
        try:
            data = child.conn.recv_bytes()
        except (EOFError, OSError):
            return None
        msg: dict[str, Any] = msgpack.unpackb(data, raw=False)
        if "extend" in msg:
            return Extend(float(msg["extend"]), int(msg["token"]))
        if "on_error" in msg:
            return ErrorHandlerRuns(int(msg["on_error"]))
        return msg

    def worn_out(self, child: Child) -> str | None:
        """Why an idle child should be replaced (its task count, its memory), or None to keep it."""
        if self.max_tasks and child.done >= self.max_tasks:
            return f"it ran {child.done} tasks (--max-tasks-per-child {self.max_tasks})"
        if self.max_memory_mb:
            rss_mb = self.rss_mb(child)
            if rss_mb > self.max_memory_mb:
                return f"its memory is {rss_mb:.0f} MB (--max-memory-per-child {self.max_memory_mb:g})"
        return None

    def rss_mb(self, child: Child) -> float:
        """The child's resident memory in MiB; 0 if it is gone."""
        try:
            if child.probe is None:
                child.probe = psutil.Process(child.pid)
            return float(child.probe.memory_info().rss) / 2**20
        except psutil.Error:
            return 0.0

    def retire(self, child: Child) -> None:
        """Close a child's pipe (an idle one exits on EOF, a killed one is gone) and forget it;
        reap_retired collects it later."""
        self._forget(child)
        self.retired.append(child.pid)

    def reap_retired(self) -> None:
        """Collect retired children that have exited, without blocking."""
        left = []
        for pid in self.retired:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue
            if done == 0:
                left.append(pid)
        self.retired = left

    def kill(self, child: Child) -> None:
        """SIGKILL a child (a hard timeout, a cancel, the shutdown timeout); reap it next."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)

    def died(self, child: Child, now: float) -> None:
        """Its pipe closed: forget it; `dead()` collects its exit and its task, never blocking."""
        self._forget(child)
        self._dying[child.pid] = (child.task, child.error_handled, now)

    def dying(self) -> bool:
        """Some child's pipe closed and its exit is not collected yet."""
        return bool(self._dying)

    def dead(self, now: float) -> list[tuple[dict[str, Any] | None, bool, str]]:
        """Children that died and have exited: (the task it ran, error handler run, how it ended) each.
        One whose pipe closed EXIT_WAIT_S ago without an exit is reported anyway and reaped later."""
        out = []
        for pid, (item, handled, since) in list(self._dying.items()):
            cause = _exit_status(pid)
            if cause is None and now - since < EXIT_WAIT_S:
                continue
            del self._dying[pid]
            if cause is None:
                self.retired.append(pid)
                cause = f"its pipe closed, and it had not exited {EXIT_WAIT_S:g}s later"
            out.append((item, handled, cause))
        return out

    def _forget(self, child: Child) -> None:
        """No longer ours: close its pipe and stop watching it."""
        fd = child.fd
        self.children.pop(fd, None)
        child.conn.close()
        if self.watch is not None:
            self.watch.unregister(fd)

    def stop(self) -> None:
        """Close every pipe (idle children exit on EOF), kill what is left, reap them all (at exit only:
        the loop itself never waits for a child)."""
        for child in list(self.children.values()):
            child.conn.close()
        pids = [child.pid for child in self.children.values()] + self.retired + list(self._dying)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.children.clear()
        self.retired.clear()
        self._dying.clear()


def _exit_status(pid: int) -> str | None:
    """How a child ended, if it has (waitpid with WNOHANG); None while it has not exited."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return "it ended and was reaped elsewhere"
    return describe_exit(status) if done else None


def describe_exit(status: int) -> str:
    """How a process ended, from its wait status, for an error message."""
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
