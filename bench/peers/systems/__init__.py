"""Every system the bench runs, in the order of its tables."""

from __future__ import annotations

from bench.peers.systems.ajq import Ajq, AjqNormal
from bench.peers.systems.arq import Arq
from bench.peers.systems.base import Submitter, System, Where
from bench.peers.systems.celery import Celery
from bench.peers.systems.dramatiq import Dramatiq, Dramatiq8
from bench.peers.systems.huey import HueyRedis, HueySqlite
from bench.peers.systems.rq import Rq

SYSTEMS: dict[str, type[System]] = {
    s.key: s for s in (Ajq, AjqNormal, HueyRedis, HueySqlite, Dramatiq, Dramatiq8, Celery, Rq, Arq)
}
AJQ = (Ajq.key, AjqNormal.key)

__all__ = ["AJQ", "SYSTEMS", "Submitter", "System", "Where"]
