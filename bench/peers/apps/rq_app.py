"""RQ's job function: the worker imports `bench.peers.apps.rq_app.run` by name for each job."""

from __future__ import annotations

from bench.peers import body


def run(kind: str, bid: str, arg: float) -> float | None:
    return body.run(kind, bid, arg)
