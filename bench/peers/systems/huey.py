"""Huey on Redis and on SQLite: a consumer with 2 worker processes (-w 2 -k process)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bench.peers.systems.base import Item, Submitter, System, Where, log_count

if TYPE_CHECKING:
    from bench.peers.stack import Stack


class HueySubmitter:
    def __init__(self, where: Where) -> None:
        from bench.peers.apps.huey_app import make_huey

        self.huey, self.task = make_huey(redis=where.redis_url or None, sqlite=where.sqlite or None)

    def submit_all(self, kind: str, items: Sequence[Item]) -> None:
        task: Any = self.task
        for bid, arg in items:
            task(kind, bid, arg)

    def close(self) -> None:
        self.huey.storage.close()


class HueyRedis(System):
    key = "huey-redis"
    label = "Huey on Redis"
    needs_redis = True
    package = "huey"
    instance = "redis_huey"
    settings = "RedisHuey (blocking pop); consumer -w 2 -k process, defaults otherwise"
    durability = "Redis AOF, fsync every second"
    crash_note = "a task is removed from the queue when a worker takes it: a worker that dies loses it"

    def worker_args(self, where: Where) -> list[list[str]]:
        app = f"bench.peers.apps.huey_app.{self.instance}"
        return [["-m", "huey.bin.huey_consumer", app, "-w", "2", "-k", "process"]]

    def ready(self, stack: Stack) -> bool:
        return log_count(stack, "Huey consumer started") >= 1

    @staticmethod
    def submitter(where: Where) -> Submitter:
        return HueySubmitter(where)


class HueySqlite(HueyRedis):
    key = "huey-sqlite"
    label = "Huey on SQLite"
    needs_redis = False
    instance = "sqlite_huey"
    settings = (
        "SqliteHuey (WAL, SQLite's default synchronous); consumer -w 2 -k process, polling every 0.1 s "
        "backing off x1.15 to 10 s when idle (Huey's defaults)"
    )
    durability = "SQLite WAL, synchronous FULL (SQLite's default): committed before enqueue returns"

    def start_backend(self, stack: Stack) -> Where:
        return Where(sqlite=str(stack.tmp / "huey.db"))
