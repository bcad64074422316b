"""The live parts of `ajc`: `task watch` (the broker's task events, a line each) and `top`."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import msgpack
import zmq
from rich.console import Group, RenderableType
from rich.live import Live
from rich.text import Text

from ajq.client.cli_views import (
    console,
    format_duration,
    one_line,
    rows_table,
    waiting,
    worker_queues,
    yes_no,
)
from ajq.client.client import Client
from ajq.client.models import QueueInfo, WorkerInfo
from ajq.protocol.curve import ClientKeys

FAILED = frozenset({"retry", "dead", "terminated", "expired", "unreachable"})  # a try or a task that failed
WILDCARDS = frozenset({"*", "0.0.0.0", "::", "[::]", ""})
POLL_S = 0.5  # the longest one poll blocks, so Ctrl-C is seen at once on every platform
_TCP = re.compile(r"^tcp://(.*):(\d+)$")

Event = dict[str, Any]


def events_endpoint(published: str, broker: str) -> str:
    """Where to connect for events: the broker's events endpoint with a wildcard host (it binds
    `tcp://*:7481`) replaced by the host we reach the broker on."""
    match = _TCP.match(published)
    if match is None or match.group(1) not in WILDCARDS:
        return published
    ours = _TCP.match(broker)
    host = ours.group(1) if ours is not None and ours.group(1) not in WILDCARDS else "127.0.0.1"
    return f"tcp://{host}:{match.group(2)}"


def find_events(c: Client) -> str:
    """The endpoint of the broker's task events, from its info."""
    return events_endpoint(str(c.info()["events"]), c.endpoint)


class EventStream:
    """A SUB socket on the broker's task events. Best effort: events before it joined are not seen."""

    def __init__(self, endpoint: str, keys: ClientKeys | None = None) -> None:
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        if keys is not None:
            keys.apply(self._sock)
        self._sock.setsockopt(zmq.RCVHWM, 100_000)
        self._sock.setsockopt(zmq.SUBSCRIBE, b"")
        self._sock.connect(endpoint)

    def next(self, timeout: float) -> Event | None:
        """The next task event, or None if none came within `timeout` seconds (or it was unreadable)."""
        if not self._sock.poll(max(0, int(timeout * 1000)), zmq.POLLIN):
            return None
        frames = self._sock.recv_multipart()
        if len(frames) != 2 or frames[0] != b"task":
            return None
        try:
            event = msgpack.unpackb(frames[1], raw=False)
        except (ValueError, msgpack.UnpackException):
            return None
        return event if isinstance(event, dict) else None

    def until(self, deadline: float | None) -> Iterator[Event]:
        """Events as they come, until the monotonic `deadline` (None: forever)."""
        while True:
            left = POLL_S if deadline is None else min(POLL_S, deadline - time.monotonic())
            if left <= 0:
                return
            event = self.next(left)
            if event is not None:
                yield event

    def close(self) -> None:
        self._sock.close(0)
        self._ctx.term()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


# -- task watch -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filter:
    """Which events `task watch` shows: each given field must match."""

    queue: str | None = None
    type: str | None = None
    id: str | None = None

    def matches(self, event: Event) -> bool:
        wanted = {"queue": self.queue, "type": self.type, "id": self.id}
        return all(value is None or event.get(key) == value for key, value in wanted.items())


def event_line(event: Event) -> str:
    """One event as text: time (UTC, ms), id, queue, type, state, tries, error."""
    stamp = event.get("time")
    at = datetime.fromtimestamp(stamp, tz=UTC).strftime("%H:%M:%S.%f")[:-3] if isinstance(stamp, int | float) else "-"
    parts = [at, str(event.get("id")), str(event.get("queue")), str(event.get("type"))]
    parts += [f"{event.get('state')!s:<11}", f"tries={event.get('tries')}"]
    error = one_line(event.get("error"), 200)
    return "  ".join([*parts, error] if error else parts)


def watch(c: Client, only: Filter, as_json: bool, count: int | None, timeout: float | None) -> int:
    """Print matching events until `count` of them or `timeout` seconds; how many were printed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    seen = 0
    with EventStream(find_events(c), c.curve) as stream:
        for event in stream.until(deadline):
            if not only.matches(event):
                continue
            print(json.dumps(event, ensure_ascii=False) if as_json else event_line(event), flush=True)
            seen += 1
            if count is not None and seen >= count:
                break
    return seen


# -- top --------------------------------------------------------------------------------------


@dataclass
class Tally:
    """Events counted per queue over one refresh: tasks complete, and tries or tasks failed."""

    started: float = field(default_factory=time.monotonic)
    done: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)

    def add(self, event: Event) -> None:
        queue, state = str(event.get("queue")), event.get("state")
        if state == "complete":
            self.done[queue] += 1
        elif state in FAILED:
            self.failed[queue] += 1

    def rates(self) -> Rates:
        seconds = max(time.monotonic() - self.started, 1e-3)
        return Rates({q: n / seconds for q, n in self.done.items()}, {q: n / seconds for q, n in self.failed.items()})


@dataclass(frozen=True)
class Rates:
    """Per second, per queue, over the last refresh."""

    done: dict[str, float]
    failed: dict[str, float]


def rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


QUEUE_COLUMNS = ["queue", "waiting", "running", "done/s", "failed/s", "dead", "workers", "paused"]
WORKER_COLUMNS = ["worker", "host", "pid", "procs", "queues", "running", "strict", "paused", "up"]


def queue_line(q: QueueInfo, rates: Rates | None) -> list[str]:
    """A queue's row on the dashboard; rates "-" until a refresh has measured them."""
    done = None if rates is None else rates.done.get(q.name, 0.0)
    failed = None if rates is None else rates.failed.get(q.name, 0.0)
    active, dead = q.counts.get("active", 0), q.counts.get("dead", 0)
    return [q.name, str(waiting(q)), str(active), rate(done), rate(failed), str(dead), str(q.workers), yes_no(q.paused)]


def worker_line(w: WorkerInfo, now: datetime) -> list[str]:
    """A worker's row on the dashboard, with how long it has been up."""
    up = "-" if w.since is None else format_duration(round((now - w.since).total_seconds()))
    row = [w.worker_id, w.host, str(w.pid), str(w.procs), worker_queues(w), str(len(w.running))]
    return [*row, yes_no(w.strict), yes_no(w.paused), up]


def dashboard(
    info: dict[str, Any], queues: list[QueueInfo], workers: list[WorkerInfo], rates: Rates | None
) -> RenderableType:
    """One frame: a header line, the queues table and the workers table."""
    now = datetime.now(tz=UTC)
    header = Text.assemble(
        ("ajq ", "bold"),
        f"pid {info.get('pid', '-')}  up {format_duration(round(float(info.get('uptime_s', 0))))}  ",
        f"{len(queues)} queues  {len(workers)} workers  {now:%H:%M:%S} UTC",
    )
    queue_rows = [queue_line(q, rates) for q in sorted(queues, key=lambda q: q.name)]
    worker_rows = [worker_line(w, now) for w in sorted(workers, key=lambda w: w.worker_id)]
    numeric = ["waiting", "running", "done/s", "failed/s", "dead", "workers", "pid", "procs"]
    return Group(
        header,
        rows_table("queues", QUEUE_COLUMNS, queue_rows, numeric),
        rows_table("workers", WORKER_COLUMNS, worker_rows, numeric),
    )


def frame(c: Client, rates: Rates | None) -> RenderableType:
    """Ask the broker for everything one frame shows."""
    return dashboard(c.info(), c.queues(), c.workers(), rates)


def top(c: Client, interval: float, once: bool) -> None:
    """Show the dashboard: one frame if `once`, else live until Ctrl-C (which the caller catches)."""
    if once:
        console().print(frame(c, None))
        return
    with EventStream(find_events(c), c.curve) as stream, Live(frame(c, None), auto_refresh=False) as live:
        tally = Tally()
        while True:
            for event in stream.until(tally.started + interval):
                tally.add(event)
            rates, tally = tally.rates(), Tally()  # events that come while we ask go to the next one
            live.update(frame(c, rates), refresh=True)
