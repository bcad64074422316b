"""Admin requests (`ajc`): workers, info, cancel, task list/retry/delete, queue pause/resume/
purge/delete, and periodic tasks."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ajq.broker import cron, lifecycle, ownership
from ajq.broker.client_api import find_queue, find_task, queue_info, task_info
from ajq.protocol import CANCELLED_ERROR, FINAL_STATES, ErrorCode, Frame, Kind, ProtocolError, TaskState
from ajq.protocol.clock import Now

if TYPE_CHECKING:
    from ajq.broker.core import Broker
    from ajq.broker.registry import WorkerState

STATES = {s.value for s in TaskState}


def workers(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    b.reply(ident, frame.corr, [_worker_info(b, w) for w in b.workers])


def _worker_info(b: Broker, w: WorkerState) -> dict[str, Any]:
    return {
        "worker_id": w.worker_id,
        "host": w.host,
        "pid": w.pid,
        "procs": w.procs,
        "queues": w.queues,
        "weights": [w.weights.get(q, 1) for q in w.queues],
        "strict": w.strict,
        "running": sorted(b.leases.held_by(w.ident)),
        "since": w.since,
        "paused": w.paused,
    }


def info(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    b.reply(
        ident,
        frame.corr,
        {
            "version": 1,
            "pid": os.getpid(),
            "started_at": b.started,
            "uptime_s": now.wall - b.started,
            "db": b.store.path,
            "db_bytes": _file_size(b.store.path),
            "events": b.events_endpoint,
            "queues": len(b.queues),
            "workers": len(b.workers),
            "active_leases": len(b.leases),
            "schedules": len(b.schedules),
            "counts": b.queues.totals(),
            "max_frame_bytes": b.limits.max_frame_bytes,
            "max_payload_bytes": b.limits.max_payload_bytes,
            "max_batch": b.limits.max_batch,
        },
    )


def _file_size(path: str) -> int:
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def cancel(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    """A waiting task ends `terminated` now; a running one once its worker has killed it. The cancel
    is written before the reply, so a broker restart tells the worker again (see `worker_api.hello`)."""
    row = find_task(b, frame.body["id"], ident)
    if row.state == TaskState.ACTIVE:
        lease = b.leases.get(row.id)
        if lease is not None:
            b.store.add_cancel(row.id)
            b.leases.cancel(row.id)
            b.send(lease.worker, Kind.CANCEL, {"id": row.id, "token": lease.token})
    elif row.state not in FINAL_STATES:
        brief = b.store.briefs([row.id])
        lifecycle.end_unstarted(b, brief, TaskState.TERMINATED, CANCELLED_ERROR, now)
        row = find_task(b, row.id)
    b.reply(ident, frame.corr, task_info(row))


def task_list(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    body = frame.body
    state = body.get("state")
    if state is not None and state not in STATES:
        raise ProtocolError(ErrorCode.BAD_FIELD, f"unknown state {state!r}: use one of {', '.join(sorted(STATES))}")
    owner = ownership.own_only(b, ident)  # a client key lists only its own tasks
    rows = b.store.list_tasks(
        body.get("queue"), state, body.get("type"), body.get("before"), body.get("limit", 50), owner
    )
    b.reply(ident, frame.corr, [task_info(r) for r in rows])


def task_retry(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    """Send an ended task back to run, with a fresh set of tries."""
    row = find_task(b, frame.body["id"])
    if row.state not in FINAL_STATES:
        raise ProtocolError(ErrorCode.BAD_FIELD, f"task {row.id} is {row.state}, not ended: nothing to retry")
    if row.state == TaskState.UNREACHABLE:
        raise ProtocolError(
            ErrorCode.BAD_FIELD, f"task {row.id} never ran because a task it depends on failed: retry that one"
        )
    b.queue(row.queue, now)
    b.store.requeue(row.id, now.wall)
    b.queues.transition(row.queue, row.state, TaskState.NEW)
    b.queues.ready_now(row.queue)
    b.events.emit(row.id, row.queue, row.type, TaskState.NEW, 0, None, now.wall)
    b.reply(ident, frame.corr, task_info(find_task(b, row.id)))


def task_delete(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    row = find_task(b, frame.body["id"])
    if row.state == TaskState.ACTIVE:
        raise ProtocolError(ErrorCode.BAD_FIELD, f"task {row.id} is running: cancel it first (ajc task cancel)")
    if row.state not in FINAL_STATES:  # dependants of a task that will never run are unreachable
        lifecycle.end_unstarted(b, b.store.briefs([row.id]), TaskState.TERMINATED, "deleted", now)
    b.store.delete_tasks([row.id])
    b.queues.transition(row.queue, TaskState.TERMINATED if row.state not in FINAL_STATES else row.state, None)
    b.reply(ident, frame.corr, {"deleted": row.id})


def queue_pause(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    _set_paused(b, ident, frame, now, paused=True)


def queue_resume(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    _set_paused(b, ident, frame, now, paused=False)


def _set_paused(b: Broker, ident: bytes, frame: Frame, now: Now, paused: bool) -> None:
    """A paused queue accepts tasks but gives none out; running ones finish."""
    q = replace(find_queue(b, frame.body["name"]), paused=paused)
    b.store.put_queue(q)
    b.queues.put(q)
    if not paused:
        b.queues.ready_now(q.name)
    b.reply(ident, frame.corr, queue_info(b, q))


def queue_purge(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    """Delete the queue's waiting tasks (not running or ended ones)."""
    q = find_queue(b, frame.body["name"])
    briefs = b.store.waiting_briefs(q.name)
    lifecycle.end_unstarted(b, briefs, TaskState.TERMINATED, "purged", now)
    b.store.delete_tasks([t.id for t in briefs])
    b.queues.transition(q.name, TaskState.TERMINATED, None, len(briefs))
    b.reply(ident, frame.corr, {"purged": len(briefs)})


def queue_delete(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    q = find_queue(b, frame.body["name"])
    active = b.queues.count(q.name, TaskState.ACTIVE)
    if active and not frame.body.get("force"):
        raise ProtocolError(
            ErrorCode.BAD_FIELD, f"queue {q.name!r} has {active} running tasks: wait for them, or delete with --force"
        )
    for task_id in b.store.queue_task_ids(q.name):
        lease = b.leases.get(task_id)
        if lease is not None:  # forced: the worker kills it; its answer will find no task
            b.send(lease.worker, Kind.CANCEL, {"id": task_id, "token": lease.token})
            lifecycle.end_lease(b, lease)
            lifecycle.resolve_dependants(b, task_id, "deleted", now)
            b.finished.append(task_id)  # its waiters hear that it is gone
    lifecycle.end_unstarted(b, b.store.waiting_briefs(q.name), TaskState.TERMINATED, "queue deleted", now)
    ids = b.store.queue_task_ids(q.name)
    b.store.release_uniques(ids)
    b.store.delete_tasks(ids)
    b.store.delete_queue(q.name)
    b.queues.drop(q.name)
    b.retention.forget(q.name)
    b.reply(ident, frame.corr, {"deleted": q.name})


HANDLERS = {
    Kind.WORKERS: workers,
    Kind.INFO: info,
    Kind.CANCEL: cancel,
    Kind.TASK_LIST: task_list,
    Kind.TASK_RETRY: task_retry,
    Kind.TASK_DELETE: task_delete,
    Kind.QUEUE_PAUSE: queue_pause,
    Kind.QUEUE_RESUME: queue_resume,
    Kind.QUEUE_PURGE: queue_purge,
    Kind.QUEUE_DELETE: queue_delete,
    **cron.HANDLERS,
}
