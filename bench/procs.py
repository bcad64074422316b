"""Real broker and worker processes for the benchmarks: start, poll for readiness, always stop."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import psutil

from ajq import Client, ClientError

ROOT = Path(__file__).resolve().parent.parent
STOP_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 15.0
PR_SET_PDEATHSIG = 1

T = TypeVar("T")


def poll_until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    """Call `check` every `interval` seconds until it returns something truthy; TimeoutError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not reached within {timeout:g}s (last: {value!r})")
        time.sleep(interval)


def stop_on_sigterm() -> None:
    """Make SIGTERM act like Ctrl-C (KeyboardInterrupt), so every `finally` stops its processes."""

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _term_with_parent() -> None:
    """In the child before exec: get SIGTERM if the bench process dies, so nothing is orphaned."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


@dataclass
class Proc:
    """One child process and the file its stdout and stderr go to."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 20) -> str:
        """The last lines of the process's log."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        """Raise if the process has exited already."""
        code = self.popen.poll()
        if code is not None:
            raise RuntimeError(f"{self.name} exited with code {code}:\n{self.tail()}")

    def stop(self) -> None:
        """SIGTERM, wait up to STOP_TIMEOUT_S, then SIGKILL its process group (forked pool children too)."""
        if self.popen.poll() is not None:
            return
        try:
            self.popen.send_signal(signal.SIGTERM)
            self.popen.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print(f"bench: {self.name} did not stop within {STOP_TIMEOUT_S:g}s: SIGKILL", file=sys.stderr)
        finally:
            self._kill_group()

    def kill(self) -> None:
        """SIGKILL the process and its group now, as a crash would, and reap it."""
        self._kill_group()

    def _kill_group(self) -> None:
        """SIGKILL the group while its leader (our child) is still unreaped, so the group id is ours."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()


def spawn(name: str, args: list[str], log: Path, python: bool = True) -> Proc:
    """Start `python args...` (or the program `args[0]` when not `python`) from the repository root,
    in its own session, output to `log`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [sys.executable, *args] if python else args,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches only us; we stop the children in order
            preexec_fn=_term_with_parent,
        )
    return Proc(name, popen, log)


@dataclass
class Cluster:
    """A broker on a free loopback port with a temp SQLite file, plus the workers started on it.

    Use as a context manager: on exit every process is stopped and the temp dir removed; on an
    error the logs' tails are printed first.
    """

    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ajq-bench-")))
    procs: list[Proc] = field(default_factory=list)
    endpoint: str = ""
    broker_args: tuple[str, ...] = ()  # extra ajbroker options, e.g. ("--synchronous", "NORMAL")

    def __enter__(self) -> Cluster:
        try:
            self.start_broker()
        except BaseException as exc:
            self.close(failed=not isinstance(exc, KeyboardInterrupt))
            raise
        return self

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close(failed=typ is not None and not issubclass(typ, KeyboardInterrupt))

    def start_broker(self) -> None:
        """Start the broker and wait until it answers a request."""
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        events = f"tcp://127.0.0.1:{free_port()}"
        args = ["-m", "ajq.broker", "--bind", self.endpoint, "--events", events, "--db", str(self.tmp / "bench.db")]
        args += self.broker_args
        broker = self._spawn("broker", args)
        poll_until(lambda: self._answers(broker), READY_TIMEOUT_S, f"broker at {self.endpoint} answering")

    def _answers(self, broker: Proc) -> bool:
        """True once the broker answers a queue list; raises if it died."""
        broker.check_alive()
        try:
            with Client(self.endpoint, timeout=0.5) as c:
                c.queues()
        except ClientError:
            return False
        return True

    def client(self, timeout: float = 30.0) -> Client:
        """A new client of this cluster's broker; close it (or use `with`)."""
        return Client(self.endpoint, timeout=timeout)

    def start_worker(self, queue: str, procs: int, app: str = "bench.apps:router", extra: tuple[str, ...] = ()) -> Proc:
        """Start `python -m worker` serving `queue` with `procs` processes (and `extra` options); do not wait."""
        n = sum(1 for p in self.procs if p.name.startswith("worker"))
        args = ["-m", "ajq.worker", "--broker", self.endpoint, "--procs", str(procs), "--queue", queue, *extra, app]
        return self._spawn(f"worker{n}-{queue}", args)

    def wait_registered(self, client: Client, queue: str, worker: Proc, n: int = 1) -> None:
        """Poll until the broker counts at least `n` workers on `queue`."""

        def registered() -> bool:
            worker.check_alive()
            return client.queue_info(queue).workers >= n

        poll_until(registered, READY_TIMEOUT_S, f"{worker.name} registered on {queue!r}")

    def _spawn(self, name: str, args: list[str]) -> Proc:
        """Start a process and keep it for close()."""
        proc = spawn(name, args, self.tmp / f"{name}.log")
        self.procs.append(proc)
        return proc

    def close(self, failed: bool = False) -> None:
        """Stop workers then the broker (each SIGTERM, then SIGKILL); remove the temp dir."""
        error: BaseException | None = None
        if failed:
            for proc in self.procs:
                print(f"--- {proc.name} log (tail) ---\n{proc.tail()}", file=sys.stderr)
        for proc in reversed(self.procs):
            try:
                proc.stop()
            except BaseException as exc:  # a second Ctrl-C: still stop the others
                error = error or exc
        self.procs.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)
        if error is not None:
            raise error


def _busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy since boot (idle, iowait, steal and guest excluded)."""
    t = psutil.cpu_times()
    idle = sum(getattr(t, f, 0.0) for f in ("idle", "iowait", "steal", "guest", "guest_nice"))
    return sum(t) - idle


def _tree_cpu_s(pids: list[int]) -> dict[int, float]:
    """CPU seconds (user + system) of each process in `pids` and of all their descendants."""
    out: dict[int, float] = {}
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for p in procs:
            with contextlib.suppress(psutil.Error):
                times = p.cpu_times()
                out[p.pid] = times.user + times.system
    return out


@dataclass
class LoadMeter:
    """Other load on the machine during a measurement: busy CPUs not used by us or our processes.

    Approximate (clock ticks; network softirq time counts as other load), but it says when a
    figure was taken on a machine that was busy with something else.
    """

    cluster: Cluster
    t0: float = 0.0
    busy0: float = 0.0
    ours0: dict[int, float] = field(default_factory=dict)

    def _pids(self) -> list[int]:
        """This process and every process of the cluster."""
        return [os.getpid(), *(p.popen.pid for p in self.cluster.procs)]

    def start(self) -> None:
        """Take the first snapshot."""
        self.ours0 = _tree_cpu_s(self._pids())
        self.busy0 = _busy_cpu_s()
        self.t0 = time.perf_counter()

    def stop(self) -> float:
        """Average CPUs busy with other processes since start()."""
        wall = time.perf_counter() - self.t0
        busy = _busy_cpu_s() - self.busy0
        ours = sum(t - self.ours0.get(pid, 0.0) for pid, t in _tree_cpu_s(self._pids()).items())
        return max(0.0, busy - ours) / wall if wall > 0 else 0.0
