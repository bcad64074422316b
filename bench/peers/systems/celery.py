"""Celery: Redis broker, acks_late, prefetch multiplier 1, prefork pool of 2."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bench.peers.apps import QUEUE
from bench.peers.systems.base import Item, Submitter, System, Where, log_count

if TYPE_CHECKING:
    from bench.peers.stack import Stack


class CelerySubmitter:
    def __init__(self, where: Where) -> None:
        from bench.peers.apps.celery_app import make_app

        self.app = make_app(where.redis_url)
        self.task: Any = self.app.tasks["body"]

    def submit_all(self, kind: str, items: Sequence[Item]) -> None:
        send = self.task.apply_async
        for bid, arg in items:
            send((kind, bid, arg))

    def close(self) -> None:
        self.app.close()


class Celery(System):
    key = "celery"
    label = "Celery"
    needs_redis = True
    package = "celery"
    settings = (
        "Redis broker; task_acks_late=True, worker_prefetch_multiplier=1, no result backend; "
        "worker --pool prefork --concurrency 2 --without-gossip --without-mingle --without-heartbeat"
    )
    durability = "Redis AOF, fsync every second"
    eventually = "after 3,600 s"
    crash_note = "acks_late: the unacked message returns after the Redis transport's visibility_timeout (3,600 s)"

    def worker_args(self, where: Where) -> list[list[str]]:
        return [[
            "-m", "celery", "-A", "bench.peers.apps.celery_app", "worker", "--pool", "prefork",
            "--concurrency", "2", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
            "--without-heartbeat", "-Q", QUEUE,
        ]]  # fmt: skip

    def ready(self, stack: Stack) -> bool:
        return log_count(stack, " ready.") >= 1

    @staticmethod
    def submitter(where: Where) -> Submitter:
        return CelerySubmitter(where)
