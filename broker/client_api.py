"""Requests from clients and `ajc`: submit, get, wait, and the queue admin calls."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from broker.store import QueueRow, TaskRow
from protocol import FINAL_STATES, ErrorCode, Frame, Kind, ProtocolError
from protocol.clock import Now

if TYPE_CHECKING:
    from broker.core import Broker


def new_ids(n: int) -> list[str]:
    """Random 80-bit task ids in hex: unique without a round trip to the database."""
    raw = os.urandom(10 * n).hex()
    return [raw[i : i + 20] for i in range(0, 20 * n, 20)]


def submit(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    body = frame.body
    tasks = body["tasks"]
    queue = b.queue(body["queue"], now).name
    generated = iter(new_ids(sum(1 for t in tasks if "id" not in t)))
    ids = [t["id"] if "id" in t else next(generated) for t in tasks]
    if len(set(ids)) != len(ids):
        raise ProtocolError(ErrorCode.DUPLICATE, "the batch names one task id twice; give each task its own id")
    rows = [(tid, t["type"], t["payload"], t.get("deadline")) for tid, t in zip(ids, tasks, strict=True)]
    try:
        b.store.insert_tasks(queue, rows, now.wall)
    except sqlite3.IntegrityError as exc:
        if "tasks.id" not in str(exc):
            raise
        raise ProtocolError(
            ErrorCode.DUPLICATE, "a task with one of these ids already exists; submit under another id"
        ) from None
    b.counts[queue]["new"] += len(rows)
    b.dirty.add(queue)
    b.reply(ident, frame.corr, {"ids": ids})


def get(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    b.reply(ident, frame.corr, task_info(_task(b, frame.body["id"])))


def wait(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    row = _task(b, frame.body["id"])
    if row.state in FINAL_STATES:
        b.reply(ident, frame.corr, task_info(row))
    elif frame.body["timeout_s"] <= 0:
        raise ProtocolError(ErrorCode.TIMEOUT, f"task {row.id} is {row.state}, not ended yet")
    else:
        b.add_waiter(row.id, ident, frame.corr, now.mono + frame.body["timeout_s"])


def queue_list(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    b.reply(ident, frame.corr, [queue_info(b, q) for q in sorted(b.queues.values(), key=lambda q: q.name)])


def queue_info_request(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    b.reply(ident, frame.corr, queue_info(b, _queue(b, frame.body["name"])))


def queue_configure(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    body = frame.body
    old = b.queue(body["name"], now)
    changes = {k: body[k] for k in ("max_concurrent", "max_run_time_s", "max_tries") if k in body}
    new = replace(old, **changes)
    b.store.put_queue(new)
    b.queues[new.name] = new
    b.dirty.add(new.name)
    b.reply(ident, frame.corr, queue_info(b, new))


def workers(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    b.reply(
        ident,
        frame.corr,
        [
            {
                "worker_id": w.worker_id,
                "host": w.host,
                "pid": w.pid,
                "procs": w.procs,
                "queues": w.queues,
                "running": sorted(w.running),
                "since": w.since,
                "paused": w.paused,
            }
            for w in b.workers
        ],
    )


def _task(b: Broker, task_id: str) -> TaskRow:
    row = b.store.get_task(task_id)
    if row is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TASK, f"no task has the id {task_id!r}; check the id")
    return row


def _queue(b: Broker, name: str) -> QueueRow:
    q = b.queues.get(name)
    if q is None:
        raise ProtocolError(
            ErrorCode.UNKNOWN_QUEUE,
            f"queue {name!r} does not exist: submit a task to it or create it with `ajc queue configure {name}`",
        )
    return q


def queue_info(b: Broker, q: QueueRow) -> dict[str, Any]:
    counts: dict[str, int] = b.counts.get(q.name, {})
    return {
        "name": q.name,
        "max_concurrent": q.max_concurrent,
        "max_run_time_s": q.max_run_time_s,
        "max_tries": q.max_tries,
        "paused": q.paused,
        "created_at": q.created_at,
        "counts": {state: n for state, n in counts.items() if n},
        "workers": sum(1 for w in b.workers if q.name in w.queues),
    }


def task_info(row: TaskRow) -> dict[str, Any]:
    """A task as the client sees it (GET, WAIT)."""
    return {
        "id": row.id,
        "queue": row.queue,
        "type": row.type,
        "state": row.state,
        "tries": row.tries,
        "payload": row.payload,
        "result": row.result,
        "last_error": row.last_error,
        "created_at": row.created_at,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "deadline": row.deadline,
        "worker": row.worker,
    }


HANDLERS = {
    Kind.SUBMIT: submit,
    Kind.GET: get,
    Kind.WAIT: wait,
    Kind.QUEUE_LIST: queue_list,
    Kind.QUEUE_INFO: queue_info_request,
    Kind.QUEUE_CONFIGURE: queue_configure,
    Kind.WORKERS: workers,
}
