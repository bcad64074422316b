"""arq's worker settings: the coroutine `body` calls the synchronous body in the event loop."""

from __future__ import annotations

from typing import Any, ClassVar

from arq.connections import RedisSettings

from bench.peers import body
from bench.peers.apps import QUEUE, redis_url

MAX_JOBS = 10  # arq's default: see bench/README.md for why not 1


async def run(ctx: dict[str, Any], kind: str, bid: str, arg: float) -> float | None:
    return body.run(kind, bid, arg)


class WorkerSettings:
    functions: ClassVar[list[Any]] = [run]
    redis_settings = RedisSettings.from_dsn(redis_url())
    queue_name = QUEUE
    max_jobs = MAX_JOBS
