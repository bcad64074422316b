"""Requests from clients and `ajc`: submit, get, wait, and the queue admin calls."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import msgpack

from ajq.broker import ownership
from ajq.broker.errors import DuplicateTaskId
from ajq.broker.store import NewTask, QueueRow, TaskRow
from ajq.protocol import FINAL_STATES, ErrorCode, Frame, Kind, ProtocolError, TaskState
from ajq.protocol.clock import Now

if TYPE_CHECKING:
    from ajq.broker.core import Broker


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
    owner = ownership.submitter(b, ident)
    try:
        if all(t.keys() <= PLAIN for t in tasks):
            _insert_plain(b, queue, ids, tasks, owner, now)
        else:
            _insert_shaped(b, ident, queue, ids, tasks, owner, now)
    except DuplicateTaskId:
        raise ProtocolError(
            ErrorCode.DUPLICATE, "a task with one of these ids already exists; submit under another id"
        ) from None
    b.reply(ident, frame.corr, {"ids": ids})


PLAIN = frozenset(("type", "payload", "id", "deadline"))  # fields of a task that needs no shaping


def one_statement(b: Broker, body: dict[str, Any]) -> bool:
    """This SUBMIT writes with one SQL statement: one plain task into a queue that exists. SQLite
    undoes a statement that fails by itself, so it needs no savepoint of its own (the common case
    of a web app's submit: one task per call)."""
    tasks = body["tasks"]
    return len(tasks) == 1 and tasks[0].keys() <= PLAIN and body["queue"] in b.queues


def _insert_plain(
    b: Broker, queue: str, ids: list[str], tasks: list[dict[str, Any]], owner: str | None, now: Now
) -> None:
    """The hot path: tasks that start `new`, with nothing to lock or wait for."""
    rows = [(i, t["type"], t["payload"], t.get("deadline")) for i, t in zip(ids, tasks, strict=True)]
    b.store.insert_plain(queue, rows, now.wall, owner)
    b.queues.transition(queue, None, TaskState.NEW, len(ids))
    b.queues.ready_now(queue)
    if b.events.subscribers:
        for i, t in zip(ids, tasks, strict=True):
            b.events.emit(i, queue, t["type"], TaskState.NEW, 0, None, now.wall)


def _insert_shaped(
    b: Broker, ident: bytes, queue: str, ids: list[str], tasks: list[dict[str, Any]], owner: str | None, now: Now
) -> None:
    batch: dict[str, str] = {}
    ownership.check_all(b, ident, [p for t in tasks for p in t.get("depends_on") or [] if p not in ids])
    rows = [_shape(b, queue, tid, t, batch, owner, now) for tid, t in zip(ids, tasks, strict=True)]
    b.store.insert_tasks(queue, rows, now.wall)
    for row in rows:
        b.queues.transition(queue, None, row.state)
        b.events.emit(row.id, queue, row.type, row.state, 0, row.last_error, now.wall)
        if row.state in (TaskState.NEW, TaskState.SCHEDULED):
            b.queues.wake(queue, row.ready_at, now.wall)


def _shape(
    b: Broker, queue: str, task_id: str, t: dict[str, Any], batch: dict[str, str], owner: str | None, now: Now
) -> NewTask:
    """A submitted task's first state: scheduled (run_at), blocked or unreachable (depends_on), new."""
    run_at, parents = t.get("run_at"), t.get("depends_on") or []
    if run_at is not None and parents:
        raise ProtocolError(ErrorCode.BAD_FIELD, "a task cannot have both run_at and depends_on: choose one")
    state, ready_at, error = TaskState.NEW, now.wall, None
    if run_at is not None and run_at > now.wall:
        state, ready_at = TaskState.SCHEDULED, run_at
    if parents:
        state, error = _dependency_state(b, task_id, parents, batch)
    unique = "unique_for_s" in t and state != TaskState.UNREACHABLE  # an ended task holds no lock
    unique_key = _lock_unique(b, queue, task_id, t, now) if unique else None
    batch[task_id] = state
    return NewTask(
        id=task_id,
        type=t["type"],
        payload=t["payload"],
        state=state,
        ready_at=ready_at,
        deadline=t.get("deadline"),
        unique_key=unique_key,
        parents=msgpack.packb(parents) if parents else None,
        load_results=bool(t.get("load_results")),
        finished_at=now.wall if state == TaskState.UNREACHABLE else None,
        last_error=error,
        signature=t.get("signature"),
        owner=owner,
    )


def _lock_unique(b: Broker, queue: str, task_id: str, t: dict[str, Any], now: Now) -> str:
    """Take the unique lock on (queue, type, payload), or refuse while another task holds it."""
    key = hashlib.sha256(b"\0".join((queue.encode(), t["type"].encode(), t["payload"]))).hexdigest()
    holder = b.store.unique_holder(key)
    if holder is not None and holder[1] > now.wall:
        left = holder[1] - now.wall
        raise ProtocolError(
            ErrorCode.DUPLICATE,
            f"task {holder[0]} with the same type and payload is already in queue {queue!r} "
            f"(unique for {left:.0f}s more, or until it ends)",
        )
    b.store.put_unique(key, task_id, now.wall + t["unique_for_s"])
    return key


def _dependency_state(
    b: Broker, task_id: str, parents: list[str], batch: dict[str, str]
) -> tuple[TaskState, str | None]:
    outside = [p for p in parents if p not in batch]
    states = {x.id: x.state for x in b.store.briefs(outside)} if outside else {}
    missing = [p for p in outside if p not in states]
    if missing:
        raise ProtocolError(ErrorCode.UNKNOWN_TASK, f"task {task_id} depends on {missing[0]!r}, which does not exist")
    states.update({p: batch[p] for p in parents if p in batch})
    ended = [p for p in parents if states[p] in FINAL_STATES and states[p] != TaskState.COMPLETE]
    if ended:
        return TaskState.UNREACHABLE, f"it depends on task {ended[0]}, which ended {states[ended[0]]}"
    waiting = [p for p in parents if states[p] != TaskState.COMPLETE]
    if not waiting:
        return TaskState.NEW, None
    b.store.add_deps(task_id, waiting)
    return TaskState.BLOCKED, None


def get(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    b.reply(ident, frame.corr, task_info(find_task(b, frame.body["id"], ident)))


def wait(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    row = find_task(b, frame.body["id"], ident)
    if row.state in FINAL_STATES:
        b.reply(ident, frame.corr, task_info(row))
    elif frame.body["timeout_s"] <= 0:
        raise ProtocolError(ErrorCode.TIMEOUT, f"task {row.id} is {row.state}, not ended yet")
    elif len(b.waiters) >= b.config.max_waits:
        raise ProtocolError(
            ErrorCode.TOO_LARGE,
            f"the broker holds {len(b.waiters)} waits, its limit (--max-waits): get() the task's state later instead",
        )
    else:
        b.waiters.add(row.id, ident, frame.corr, now.mono + frame.body["timeout_s"])


def queue_list(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    b.reply(ident, frame.corr, [queue_info(b, q) for q in b.queues])


def queue_info_request(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    b.reply(ident, frame.corr, queue_info(b, find_queue(b, frame.body["name"])))


def queue_configure(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    body = frame.body
    old = b.queue(body["name"], now)
    keys = ("max_concurrent", "max_run_time_s", "max_tries", "retention_s", "dead_max", "dead_retention_s", "backoff_s")
    changes = {k: body[k] for k in keys if k in body}
    new = replace(old, **changes)
    b.store.put_queue(new)
    b.queues.put(new)
    b.queues.ready_now(new.name)
    b.retention.forget(new.name)
    b.reply(ident, frame.corr, queue_info(b, new))


def find_task(b: Broker, task_id: str, ident: bytes | None = None) -> TaskRow:
    """The task called `task_id`; with `ident`, only if that sender may reach it (ownership)."""
    row = b.store.get_task(task_id)
    if row is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TASK, f"no task has the id {task_id!r}; check the id")
    if ident is not None:
        ownership.check(b, ident, row.id, row.owner)
    return row


def find_queue(b: Broker, name: str) -> QueueRow:
    q = b.queues.get(name)
    if q is None:
        raise ProtocolError(
            ErrorCode.UNKNOWN_QUEUE,
            f"queue {name!r} does not exist: submit a task to it or create it with `ajc queue configure {name}`",
        )
    return q


def queue_info(b: Broker, q: QueueRow) -> dict[str, Any]:
    return {
        "name": q.name,
        "max_concurrent": q.max_concurrent,
        "max_run_time_s": q.max_run_time_s,
        "max_tries": q.max_tries,
        "paused": q.paused,
        "created_at": q.created_at,
        "retention_s": q.retention_s,
        "dead_max": q.dead_max,
        "dead_retention_s": q.dead_retention_s,
        "backoff_s": q.backoff_s,
        "counts": b.queues.counts(q.name),
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
        "ready_at": row.ready_at,
        "depends_on": msgpack.unpackb(row.parents) if row.parents else [],
        "seq": row.seq,
        "owner": row.owner,
    }


HANDLERS = {
    Kind.SUBMIT: submit,
    Kind.GET: get,
    Kind.WAIT: wait,
    Kind.QUEUE_LIST: queue_list,
    Kind.QUEUE_INFO: queue_info_request,
    Kind.QUEUE_CONFIGURE: queue_configure,
}
