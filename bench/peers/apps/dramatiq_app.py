"""Dramatiq's worker app: Redis broker with its default middleware, the actor `body`."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.peers import body
from bench.peers.apps import QUEUE, redis_url


def make_actor(url: str) -> dramatiq.Actor[[str, str, float], float | None]:
    """The actor `body` on a new RedisBroker at `url`."""
    broker = RedisBroker(url=url)  # type: ignore[no-untyped-call]
    declare = dramatiq.actor(actor_name="body", queue_name=QUEUE, broker=broker)
    actor: dramatiq.Actor[[str, str, float], float | None] = declare(body.run)
    return actor


actor = make_actor(redis_url())
dramatiq.set_broker(actor.broker)
