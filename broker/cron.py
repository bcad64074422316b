"""Periodic tasks: the broker fires each schedule itself, so one schedule never fires twice.

The schedule's next run is written in the same transaction as the task it fires: a crash loses
both or neither. Runs missed while the broker was down are caught up by one run at start.
Cron expressions are parsed by `croniter` (5 fields, or 6 with seconds last; UTC), not by hand.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from croniter import croniter

from ajq.broker.client_api import new_ids
from ajq.broker.store import NewTask, ScheduleRow
from ajq.protocol import ErrorCode, Frame, Kind, ProtocolError, TaskState
from ajq.protocol.clock import Now

if TYPE_CHECKING:
    from ajq.broker.core import Broker

log = logging.getLogger("ajq.broker")


def next_run(expr: str, after: float) -> float:
    """The first time strictly after `after` (wall seconds) that `expr` matches, in UTC."""
    start = datetime.fromtimestamp(after, tz=UTC)
    return float(croniter(expr, start).get_next(float))


def valid(expr: str) -> None:
    if len(expr.split()) not in (5, 6) or not croniter.is_valid(expr):
        raise ProtocolError(
            ErrorCode.BAD_FIELD,
            f"{expr!r} is not a cron expression: use 5 fields, e.g. '*/5 * * * *' (UTC), or 6 with seconds last",
        )


def next_due(b: Broker) -> float | None:
    return min((s.next_run for s in b.schedules.values()), default=None)


def fire_due(b: Broker, now: Now) -> None:
    """Submit one task for every schedule that is due (once, however many runs were missed)."""
    for s in list(b.schedules.values()):  # a copy: firing puts the schedule's next run
        if s.next_run > now.wall:
            continue
        [task_id] = new_ids(1)
        queue = b.queue(s.queue, now).name
        b.store.insert_tasks(queue, [NewTask(task_id, s.type, s.payload, ready_at=now.wall)], now.wall)
        b.queues.transition(queue, None, TaskState.NEW)
        b.queues.ready_now(queue)
        b.events.emit(task_id, queue, s.type, TaskState.NEW, 0, None, now.wall)
        fired = ScheduleRow(
            s.name, s.cron, s.type, s.payload, s.queue, next_run(s.cron, now.wall), now.wall, task_id, s.created_at
        )
        b.store.put_schedule(fired)
        b.schedules[s.name] = fired
        log.info("schedule %s fired task %s", s.name, task_id)


def add(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    body = frame.body
    valid(body["cron"])
    if len(body["payload"]) > b.limits.max_payload_bytes:
        raise ProtocolError(
            ErrorCode.TOO_LARGE,
            f"the payload is over {b.limits.max_payload_bytes} bytes{b.limits.named('max_payload_bytes')}: "
            "pass a reference instead",
        )
    old = b.schedules.get(body["name"])
    row = ScheduleRow(
        body["name"], body["cron"], body["type"], body["payload"], body["queue"],
        next_run(body["cron"], now.wall), old.last_run if old else None, old.last_task if old else None,
        old.created_at if old else now.wall,
    )  # fmt: skip
    b.queue(row.queue, now)
    b.store.put_schedule(row)
    b.schedules[row.name] = row
    b.reply(ident, frame.corr, schedule_info(row))


def list_(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    b.reply(ident, frame.corr, [schedule_info(s) for s in sorted(b.schedules.values(), key=lambda s: s.name)])


def get(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    b.reply(ident, frame.corr, schedule_info(_find(b, frame.body["name"])))


def delete(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    s = _find(b, frame.body["name"])
    b.store.delete_schedule(s.name)
    del b.schedules[s.name]
    b.reply(ident, frame.corr, {"deleted": s.name})


def _find(b: Broker, name: str) -> ScheduleRow:
    s = b.schedules.get(name)
    if s is None:
        raise ProtocolError(ErrorCode.UNKNOWN_SCHEDULE, f"no schedule is called {name!r}: see `ajc cron ls`")
    return s


def schedule_info(s: ScheduleRow) -> dict[str, object]:
    return {
        "name": s.name,
        "cron": s.cron,
        "type": s.type,
        "payload": s.payload,
        "queue": s.queue,
        "next_run": s.next_run,
        "last_run": s.last_run,
        "last_task": s.last_task,
        "created_at": s.created_at,
    }


HANDLERS = {Kind.CRON_ADD: add, Kind.CRON_LIST: list_, Kind.CRON_GET: get, Kind.CRON_DELETE: delete}
