"""A health probe in its own process (so the test's own work never delays it): INFO every 10 ms."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event

from ajq import Client


def _ping(endpoint: str, stop: Event, out: Connection) -> None:
    latencies: list[float] = []
    with Client(endpoint, timeout=2) as c:
        while not stop.wait(0.01):
            start = time.perf_counter()
            c.info()
            latencies.append(time.perf_counter() - start)
    out.send(latencies)


@contextmanager
def probing(endpoint: str) -> Iterator[list[float]]:
    """Yields a list that holds the probe's latencies (seconds) once the block has ended."""
    ctx = multiprocessing.get_context("spawn")
    stop, (receive, send) = ctx.Event(), ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_ping, args=(endpoint, stop, send), daemon=True)
    proc.start()
    latencies: list[float] = []
    try:
        yield latencies
    finally:
        stop.set()
        if receive.poll(10):
            latencies += receive.recv()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
