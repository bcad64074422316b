"""Real processes for tests: a broker on a free loopback port with a temp database, and workers.

Every process started here is stopped by its fixture. Nothing sleeps to wait: `wait_for` polls a
condition with a deadline.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil

from ajq import Client, ClientError

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")
PR_SET_PDEATHSIG = 1


def _die_with_the_tests() -> None:
    """In the child before exec: SIGKILL when the test run dies (a hung test killed by its timeout
    whose `finally` never ran), so no broker or worker outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(cond: Callable[[], T], timeout: float = 10.0, what: str = "condition", every: float = 0.01) -> T:
    """Poll `cond` until it returns a truthy value; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def env(test_dir: Path) -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    e["AJQ_TEST_DIR"] = str(test_dir)
    e.pop("AJQ_BROKER", None)
    return e


@dataclass
class Proc:
    """A started ajq process with its log file."""

    args: list[str]
    log: Path
    test_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    cwd: Path = REPO  # where it runs; an app's own directory for tests of how apps import ajq
    repo_on_path: bool = True  # PYTHONPATH holds the repository (tests.apps); False: as a user runs it

    def start(self) -> Proc:
        out = self.log.open("ab")
        proc_env = env(self.test_dir)
        if not self.repo_on_path:
            proc_env.pop("PYTHONPATH")
        self.proc = subprocess.Popen(
            [sys.executable, *self.args],
            cwd=self.cwd,
            env=proc_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_the_tests,
        )
        out.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not left within `timeout`."""
        if not self.alive():
            return
        self.signal(signal.SIGTERM)
        try:
            self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.alive():
            self.signal(signal.SIGKILL)
            self.wait(10)

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@dataclass
class BrokerHandle:
    endpoint: str
    db: Path
    proc: Proc
    clients: list[Client] = field(default_factory=list)

    def client(self, timeout: float = 10.0) -> Client:
        c = Client(self.endpoint, timeout=timeout)
        self.clients.append(c)
        return c

    def ready(self, timeout: float = 15.0, client: Callable[[], Client] | None = None) -> None:
        """Wait until the broker answers (`client` makes the probe's client: keys, for a CURVE broker)."""

        def up() -> bool:
            if not self.proc.alive():
                raise AssertionError(f"broker exited:\n{self.proc.tail()}")
            with client() if client else Client(self.endpoint, timeout=0.3) as c:
                try:
                    c.queues()
                    return True
                except ClientError:
                    return False

        wait_for(up, timeout, "the broker to answer")

    def restart(self) -> None:
        self.proc.kill()
        self.proc.start()
        self.ready()

    def close(self) -> None:
        for c in self.clients:
            c.close()
        self.proc.stop()


def start_broker(tmp: Path, *extra: str, db: Path | None = None, ready: bool = True) -> BrokerHandle:
    """Start `ajbroker` on free loopback ports and a database in `tmp` (or `db`), and wait until it answers."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    db = db or tmp / "ajq.db"
    events = f"tcp://127.0.0.1:{free_port()}"
    args = ["-m", "ajq.broker", "--bind", endpoint, "--events", events, "--db", str(db), "--heartbeat", "0.2",
            "--lease-grace", "0.5", *extra]  # fmt: skip
    handle = BrokerHandle(endpoint, db, Proc(args, tmp / "broker.log", tmp).start())
    if ready:
        handle.ready()
    return handle


def registered(c: Client, pid: int) -> bool:
    try:
        return any(w.pid == pid for w in c.workers())
    except ClientError:
        return False


def start_worker(
    broker: BrokerHandle,
    tmp: Path,
    app: str,
    *,
    procs: int = 1,
    queues: tuple[str, ...] = ("DEFAULT",),
    extra: Any = (),
    client: Client | None = None,
) -> Proc:
    """Start `ajworker` and wait until the broker lists it (asked through `client`, if given)."""
    c = client or broker.client(timeout=2)
    args = ["-m", "ajq.worker", "--broker", broker.endpoint, "--procs", str(procs), *extra]
    for q in queues:
        args += ["--queue", q]
    n = len(list(tmp.glob("worker*.log")))
    proc = Proc([*args, app], tmp / f"worker{n}.log", tmp).start()
    try:
        wait_for(lambda: registered(c, proc.pid) or _died(proc), 15, "the worker to register")
    except BaseException:
        proc.kill()
        raise
    return proc


def gone(pid: int) -> bool:
    """The process has ended (a zombie counts: its parent may be stopped and unable to reap it)."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def _died(proc: Proc) -> bool:
    if not proc.alive():
        raise AssertionError(f"worker exited:\n{proc.tail()}")
    return False


def events(test_dir: Path) -> list[tuple[str, str, float, int]]:
    """Lines the test apps wrote: (what, task id, time, pid)."""
    path = test_dir / "events.log"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        what, task_id, when, pid = line.split()
        out.append((what, task_id, float(when), int(pid)))
    return out
