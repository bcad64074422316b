"""ajworker's settings: one frozen dataclass; the CLI and the environment fill it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from worker.errors import ConfigError

DEFAULT_ENDPOINT = "tcp://127.0.0.1:7480"


@dataclass(frozen=True)
class WorkerConfig:
    broker: str = field(default_factory=lambda: os.environ.get("AJQ_BROKER", DEFAULT_ENDPOINT))
    procs: int = 1  # child processes, one task each
    queues: tuple[str, ...] = ("DEFAULT",)
    prefetch: int = -1  # tasks held ready beyond procs; -1: adaptive (about 25 ms of work)
    shutdown_timeout_s: float = 8.0  # on SIGTERM/SIGINT, time running tasks get to finish
    heartbeat_s: float = 1.0  # until the broker's welcome says otherwise
    ack_timeout_s: float = 3.0  # at shutdown, how long to wait for the broker to take our results

    def __post_init__(self) -> None:
        if self.procs < 1:
            raise ConfigError(f"procs={self.procs}: need at least one process (or --procs auto)")
        if not self.queues:
            raise ConfigError("no queue to serve: name one with --queue")
        if self.shutdown_timeout_s < 0:
            raise ConfigError("shutdown timeout must be zero or more seconds")
