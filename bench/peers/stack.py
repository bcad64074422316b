"""One system's backend and workers for one run of one workload: started fresh, always stopped.

Every run gets a new temp dir, a new ledger, its own redis-server when the system needs one, and
its own ajq broker for ajq. On exit (an error and Ctrl-C included) the workers are stopped first,
then the backend; every process a worker forked is found and killed too, even one that left the
worker's process group (RQ's work horses do).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from pathlib import Path
from types import TracebackType

import psutil

from bench.peers.apps import REDIS_URL_ENV, SQLITE_ENV
from bench.peers.body import LEDGER_ENV
from bench.peers.ledger import Ledger
from bench.peers.redis_server import RedisServer
from bench.peers.systems import System, Where
from bench.procs import Proc, poll_until, spawn

READY_TIMEOUT_S = 30.0  # Celery and Dramatiq take a few seconds to start on a busy 2-core machine


class Stack:
    """Use as a context manager; start_workers(), then wait_ready() before timing anything."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.tmp = Path(tempfile.mkdtemp(prefix=f"ajq-peers-{system.key}-"))
        self.ledger = Ledger(self.tmp / "ledger.log")
        self.exit = contextlib.ExitStack()  # backends that are context managers (ajq's Cluster)
        self.backend: list[Proc] = []
        self.backend_pids: list[int] = []  # pids to profile or meter: the broker's
        self.workers: list[Proc] = []
        self.where = Where()
        self.starts = 0  # worker generations started, for the log names

    def __enter__(self) -> Stack:
        os.environ[LEDGER_ENV] = str(self.ledger.path)
        try:
            if self.system.needs_redis:
                redis = RedisServer(self.tmp)
                self.backend.append(redis.start())
                self.where = Where(redis_url=redis.url)
            self.where = self.system.start_backend(self)
        except BaseException:
            self.close()
            raise
        os.environ[REDIS_URL_ENV] = self.where.redis_url
        os.environ[SQLITE_ENV] = self.where.sqlite
        return self

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if typ is not None and not issubclass(typ, KeyboardInterrupt):
            for proc in self.backend + self.workers:
                print(f"--- {proc.name} log (tail) ---\n{proc.tail()}")
        self.close()

    def start_workers(self) -> None:
        """Start the system's worker processes; do not wait for them."""
        self.starts += 1
        for i, args in enumerate(self.system.worker_args(self.where)):
            name = f"worker{self.starts}.{i}"
            self.workers.append(spawn(name, args, self.tmp / f"{name}.log"))

    def wait_ready(self) -> None:
        """Poll until the system says its workers are ready; raise if one of them died."""

        def ready() -> bool:
            for w in self.workers:
                w.check_alive()
            return self.system.ready(self)

        poll_until(ready, READY_TIMEOUT_S, f"{self.system.label} workers ready", 0.05)

    def _tree(self) -> list[psutil.Process]:
        """Every process the workers started, however deep, and in whichever process group."""
        out: list[psutil.Process] = []
        for w in self.workers:
            with contextlib.suppress(psutil.Error):
                out.extend(psutil.Process(w.popen.pid).children(recursive=True))
        return out

    def kill_workers(self) -> None:
        """SIGKILL every worker process and everything they forked, as a crash of the host would."""
        tree = self._tree()
        for w in self.workers:
            w.kill()
        _kill_all(tree)
        self.workers.clear()

    def stop_workers(self) -> None:
        """Stop the workers (SIGTERM, then SIGKILL after a timeout) and whatever they forked."""
        tree = self._tree()
        try:
            for w in self.workers:
                w.stop()
        finally:
            _kill_all(tree)
            self.workers.clear()

    def close(self) -> None:
        """Workers first, then the backend, then the temp dir; a second Ctrl-C still stops the rest."""
        error: BaseException | None = None
        for step in (self.stop_workers, self.exit.close, self._stop_backend):
            try:
                step()
            except BaseException as exc:
                error = error or exc
        shutil.rmtree(self.tmp, ignore_errors=True)
        if error is not None:
            raise error

    def _stop_backend(self) -> None:
        for proc in reversed(self.backend):
            proc.stop()
        self.backend.clear()


def _kill_all(procs: list[psutil.Process]) -> None:
    """SIGKILL each process still alive and wait until it is gone."""
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.send_signal(signal.SIGKILL)
    psutil.wait_procs(procs, timeout=5)
