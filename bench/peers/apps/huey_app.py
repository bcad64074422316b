"""Huey's worker apps: `redis_huey` (RedisHuey) and `sqlite_huey` (SqliteHuey), built on first use.

Built lazily (PEP 562 module __getattr__) because SqliteHuey opens and creates its database file
when constructed: only the consumer that asks for it should.
"""

from __future__ import annotations

import os
from typing import Any

from huey import Huey, RedisHuey, SqliteHuey

from bench.peers import body
from bench.peers.apps import QUEUE, SQLITE_ENV, redis_url


def make_huey(redis: str | None = None, sqlite: str | None = None) -> tuple[Huey, Any]:
    """A Huey on Redis at `redis` or on the SQLite file `sqlite` (its defaults otherwise), and its task `body`."""
    huey: Huey = RedisHuey(QUEUE, url=redis) if redis else SqliteHuey(QUEUE, filename=sqlite)
    return huey, huey.task(name="body")(body.run)


def __getattr__(name: str) -> Huey:
    if name == "redis_huey":
        huey, _ = make_huey(redis=redis_url())
    elif name == "sqlite_huey":
        huey, _ = make_huey(sqlite=os.environ[SQLITE_ENV])
    else:
        raise AttributeError(name)
    globals()[name] = huey
    return huey
