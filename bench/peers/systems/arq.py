"""arq: two worker processes, one job at a time each (max_jobs=1), polling Redis every 0.5 s."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bench.peers.apps import QUEUE
from bench.peers.systems.base import Item, Submitter, System, Where, log_count

if TYPE_CHECKING:
    from bench.peers.stack import Stack


class ArqSubmitter:
    """arq's client is asyncio: each submit_all runs one coroutine awaiting one enqueue_job per task."""

    def __init__(self, where: Where) -> None:
        from arq import create_pool
        from arq.connections import RedisSettings

        self.loop = asyncio.new_event_loop()
        self.pool: Any = self.loop.run_until_complete(create_pool(RedisSettings.from_dsn(where.redis_url)))

    async def _submit(self, kind: str, items: Sequence[Item]) -> None:
        enqueue = self.pool.enqueue_job
        for bid, arg in items:
            await enqueue("run", kind, bid, arg, _queue_name=QUEUE)

    def submit_all(self, kind: str, items: Sequence[Item]) -> None:
        self.loop.run_until_complete(self._submit(kind, items))

    def close(self) -> None:
        self.loop.run_until_complete(self.pool.aclose())
        self.loop.close()


class Arq(System):
    key = "arq"
    label = "arq"
    needs_redis = True
    package = "arq"
    settings = "2 worker processes, max_jobs=1 each, poll_delay 0.5 s and the other defaults"
    durability = "Redis AOF, fsync every second"
    eventually = "after 310 s"
    crash_note = "a job whose worker died runs again when its in-progress key expires: job_timeout (300 s) + 10 s"

    def worker_args(self, where: Where) -> list[list[str]]:
        return [["-m", "arq", "bench.peers.apps.arq_app.WorkerSettings"] for _ in range(2)]

    def ready(self, stack: Stack) -> bool:
        return log_count(stack, "Starting worker for") >= 2

    @staticmethod
    def submitter(where: Where) -> Submitter:
        return ArqSubmitter(where)
