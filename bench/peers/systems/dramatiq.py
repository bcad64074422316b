"""Dramatiq: Redis broker with its default middleware, 2 processes of 1 thread (and of 8)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from bench.peers.systems.base import Item, Submitter, System, Where, log_count

if TYPE_CHECKING:
    from bench.peers.stack import Stack


class DramatiqSubmitter:
    def __init__(self, where: Where) -> None:
        from bench.peers.apps.dramatiq_app import make_actor

        self.actor: Any = make_actor(where.redis_url)

    def submit_all(self, kind: str, items: Sequence[Item]) -> None:
        send = self.actor.send
        for bid, arg in items:
            send(kind, bid, arg)

    def close(self) -> None:
        self.actor.broker.close()


class Dramatiq(System):
    key = "dramatiq"
    label = "Dramatiq, 1 thread"
    needs_redis = True
    package = "dramatiq"
    threads: ClassVar[int] = 1
    settings = "RedisBroker, default middleware (Retries, TimeLimit, AgeLimit, ...); --processes 2 --threads 1"
    durability = "Redis AOF, fsync every second"
    eventually = "after 60 s or more"
    crash_note = (
        "a dead worker's messages are requeued once its heartbeat is 60 s old, by a maintenance run "
        "that 0.1 % of broker commands trigger"
    )

    def worker_args(self, where: Where) -> list[list[str]]:
        app = "bench.peers.apps.dramatiq_app"
        return [["-m", "dramatiq", app, "--processes", "2", "--threads", str(self.threads)]]

    def ready(self, stack: Stack) -> bool:
        return log_count(stack, "Worker process is ready for action.") >= 2

    @staticmethod
    def submitter(where: Where) -> Submitter:
        return DramatiqSubmitter(where)


class Dramatiq8(Dramatiq):
    key = "dramatiq8"
    label = "Dramatiq, 8 threads"
    threads = 8
    settings = "RedisBroker, default middleware; --processes 2 --threads 8 (Dramatiq's default threads)"
