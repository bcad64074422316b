"""Celery's worker app: Redis broker, acks_late, prefetch multiplier 1, no result backend."""

from __future__ import annotations

from celery import Celery

from bench.peers import body
from bench.peers.apps import QUEUE, redis_url


def make_app(url: str) -> Celery:
    """A Celery app on the Redis at `url` with the task `body` declared."""
    app = Celery("bench_peers", broker=url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,  # ack after the body ran: a worker that dies mid-task does not lose it
        worker_prefetch_multiplier=1,  # one reserved task per process beyond the one running
        task_ignore_result=True,  # the ledger is the record; no result backend is configured
        task_default_queue=QUEUE,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    app.task(name="body")(body.run)
    return app


app = make_app(redis_url())
