"""RQ: two `rq worker` processes, each forking a work horse per job."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bench.peers.apps import QUEUE
from bench.peers.systems.base import Item, Submitter, System, Where, log_count

if TYPE_CHECKING:
    from bench.peers.stack import Stack


class RqSubmitter:
    def __init__(self, where: Where) -> None:
        from redis import Redis
        from rq import Queue

        self.redis = Redis.from_url(where.redis_url)
        self.queue: Any = Queue(QUEUE, connection=self.redis)

    def submit_all(self, kind: str, items: Sequence[Item]) -> None:
        enqueue = self.queue.enqueue
        for bid, arg in items:
            enqueue("bench.peers.apps.rq_app.run", kind, bid, arg)

    def close(self) -> None:
        self.redis.close()  # type: ignore[no-untyped-call]


class Rq(System):
    key = "rq"
    label = "RQ"
    needs_redis = True
    package = "rq"
    settings = "2 x `rq worker` (rq.Worker: a forked work horse per job), defaults otherwise"
    durability = "Redis AOF, fsync every second"
    crash_note = (
        "an abandoned job is found once its heartbeat (job_monitoring_interval 30 s + 60 s) expires, at the "
        "next maintenance (every 600 s), and then runs again only if it was enqueued with Retry"
    )
    scale = 0.1  # a fork per job drains at about 80 tasks/s: a tenth of the queue workloads' counts

    def worker_args(self, where: Where) -> list[list[str]]:
        # no --name: a worker killed by the crash workload stays registered for its TTL, and RQ
        # refuses a new worker of the same name
        return [["-m", "rq.cli", "worker", "--url", where.redis_url, QUEUE] for _ in range(2)]

    def ready(self, stack: Stack) -> bool:
        return log_count(stack, "Listening on") >= 2

    @staticmethod
    def submitter(where: Where) -> Submitter:
        return RqSubmitter(where)
