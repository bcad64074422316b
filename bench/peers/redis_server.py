"""The bench's own redis-server: a free loopback port, a temp dir, AOF fsynced every second.

`appendonly yes` with `appendfsync everysec` is the durability class the Redis-based peers run in
here: an acknowledged enqueue may be lost if the machine dies within about a second (a killed
redis-server process loses nothing that reached it). RDB snapshots are off (`save ""`), so no
fork for a snapshot lands inside a measurement.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.procs import READY_TIMEOUT_S, Proc, free_port, poll_until, spawn

INSTALL_HINT = "install it with `apt-get install redis-server` (Debian/Ubuntu) to run the Redis-based peers"


def available() -> str | None:
    """The redis-server program's path, or None when it is not installed."""
    return shutil.which("redis-server")


class RedisServer:
    """One redis-server process; start() waits until it answers PING, stop() ends it."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: Proc | None = None

    def start(self) -> Proc:
        program = available()
        if program is None:
            raise RuntimeError(f"redis-server not found: {INSTALL_HINT}")
        args = [
            program, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.tmp),
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--daemonize", "no",
        ]  # fmt: skip
        self.proc = spawn("redis", args, self.tmp / "redis.log", python=False)
        poll_until(self._answers, READY_TIMEOUT_S, f"redis-server on port {self.port} answering PING")
        return self.proc

    def _answers(self) -> bool:
        import redis

        assert self.proc is not None
        self.proc.check_alive()
        try:
            with redis.Redis.from_url(self.url, socket_timeout=0.5) as r:
                return bool(r.ping())
        except redis.RedisError:
            return False

    def version(self) -> str:
        """redis-server's version, as INFO reports it."""
        import redis

        with redis.Redis.from_url(self.url) as r:
            return str(r.info("server")["redis_version"])
