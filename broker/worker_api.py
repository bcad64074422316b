"""Messages from workers: HELLO, CREDIT, PAUSE, RESULTS, RELEASE, HEARTBEAT, BYE.

Every answer about a task is checked against its current lease: a token that is not the task's
current one is refused with STALE_LEASE and changes nothing (fencing).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ajq.broker import lifecycle
from ajq.broker.config import NEW_QUEUE_LIMITS
from ajq.broker.leases import Lease
from ajq.broker.registry import WorkerState
from ajq.protocol import ErrorCode, Frame, Kind, ProtocolError, TaskState
from ajq.protocol.clock import Now
from ajq.protocol.defaults import DEFAULT_QUEUE
from ajq.protocol.limits import MAX_PREFETCH_PER_PROC, cut_error, max_credit
from ajq.protocol.messages import check_item

if TYPE_CHECKING:
    from ajq.broker.core import Broker


def hello(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    body = frame.body
    if ident != body["worker_id"].encode():
        raise ProtocolError(ErrorCode.BAD_FIELD, "hello worker_id must equal the socket's routing id")
    if b.workers.get(ident) is None and len(b.workers) >= b.config.max_workers:
        raise ProtocolError(
            ErrorCode.TOO_LARGE,
            f"the broker has {len(b.workers)} workers registered, its limit: start ajbroker with a higher "
            "--max-workers, or stop some",
        )
    unused = [name for name in dict.fromkeys(body["queues"]) if _unused(b, name)]
    for name in body["queues"]:
        b.queue(name, now)
    weights = body.get("weights") or [1] * len(body["queues"])
    if len(weights) != len(body["queues"]):
        raise ProtocolError(ErrorCode.BAD_FIELD, "hello weights must have one weight per queue")
    worker = WorkerState(
        ident=ident,
        worker_id=body["worker_id"],
        host=body["host"],
        pid=body["pid"],
        procs=body["procs"],
        queues=list(dict.fromkeys(body["queues"])),
        weights=dict(zip(body["queues"], weights, strict=True)),
        strict=bool(body.get("strict")),
        since=now.wall,
        last_seen=now.mono,
    )
    b.workers.add(worker)
    running = sorted(b.leases.held_by(ident))
    b.reply(
        ident,
        frame.corr,
        {
            "heartbeat_s": b.config.heartbeat_s,
            "lease_bound_s": b.config.lease_bound_s,
            "lease_grace_s": b.config.lease_grace_s,
            "max_frame_bytes": b.limits.max_frame_bytes,
            "max_payload_bytes": b.limits.max_payload_bytes,
            "max_batch": b.limits.max_batch,
            "running": running,
            "unused_queues": unused,
        },
    )
    # Cancels acknowledged before a broker restart or this reconnect are told again, after the welcome.
    for lease in b.leases.of_worker(ident):
        if b.leases.cancelled(lease.task_id):
            b.send(ident, Kind.CANCEL, {"id": lease.task_id, "token": lease.token})


def _unused(b: Broker, name: str) -> bool:
    """No client has configured `name`, submitted to it or scheduled into it (a typo, perhaps)."""
    q = b.queues.get(name)
    if q is None:
        return True
    if name == DEFAULT_QUEUE:
        return False
    defaults = NEW_QUEUE_LIMITS
    untouched = (q.max_concurrent, q.max_run_time_s, q.max_tries) == (
        defaults.max_concurrent, defaults.max_run_time_s, defaults.max_tries,
    )  # fmt: skip
    scheduled = any(s.queue == name for s in b.schedules.values())
    return untouched and not scheduled and not b.queues.counts(name)


def credit(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    worker = _registered(b, ident, now)
    _check_credit(b, worker, frame.body["n"])
    b.workers.grant(worker, frame.body["n"], resume=True)


def _check_credit(b: Broker, worker: WorkerState, n: int) -> None:
    """Refuse credit that would let the worker hold more than its processes and their prefetch."""
    most = max_credit(worker.procs)
    holding = worker.credit + len(b.leases.held_by(worker.ident)) + n
    if holding > most:
        raise ProtocolError(
            ErrorCode.BAD_FIELD,
            f"credit {n} would let this worker hold {holding} tasks, more than "
            f"{most} ({worker.procs} processes, {MAX_PREFETCH_PER_PROC} ready each): ask only for free slots",
        )


def pause(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    worker = _registered(b, ident, now)
    b.workers.pause(worker)


def results(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    worker = b.workers.seen(ident, now.mono)
    accepted: list[str] = []
    refused: list[list[Any]] = []
    for i, item in enumerate(frame.body["results"]):
        if not _well_formed(b, Kind.RESULTS, "results", i, item, refused):
            continue
        lease = b.leases.get(item["id"])
        if lease is None or lease.token != item["token"] or lease.worker != ident:
            if _late_but_current(b, item, now):
                accepted.append(item["id"])
            else:
                refused.append(_stale(item["id"], item["token"]))
            continue
        outcome = item["outcome"]
        error = cut(item.get("error"))
        if outcome == "complete":
            lifecycle.finish(b, lease, TaskState.COMPLETE, item.get("result"), None, now)
        elif outcome == "terminate":
            lifecycle.finish(b, lease, TaskState.TERMINATED, None, error or "terminated by its handler", now)
        else:
            lifecycle.fail(b, lease, error or "failed", float(item.get("retry_in_s", 0.0)), now)
        accepted.append(lease.task_id)
    b.reply(ident, frame.corr, {"accepted": accepted, "refused": refused})
    if worker is None:
        _not_registered(b, ident)
        return
    try:
        _check_credit(b, worker, frame.body.get("credit", 0))
    except ProtocolError as exc:  # the outcomes stand; only the credit is refused
        b.reply_error(ident, 0, exc)
        return
    b.workers.grant(worker, frame.body.get("credit", 0), resume=False)


def _late_but_current(b: Broker, item: dict[str, Any], now: Now) -> bool:
    """An outcome from a worker the broker gave up on (lost, or its lease ran out), for a task
    waiting to retry that has not been leased again since: its token is still the task's last.
    Take a complete or terminate (the work is done), so a worker that comes back loses nothing.

    A final state is final: a task that went `dead` (its waiters answered, its dependants made
    `unreachable`) is not revived by a late answer, which is refused as stale (SPEC section 6)."""
    if item["outcome"] == "fail":
        return False
    row = b.store.get_task(item["id"])
    if row is None or row.state != TaskState.RETRY or row.token != item["token"]:
        return False
    state = TaskState.COMPLETE if item["outcome"] == "complete" else TaskState.TERMINATED
    error = None if state == TaskState.COMPLETE else cut(item.get("error")) or "terminated by its handler"
    b.store.finish([(state, item.get("result"), error, now.wall, row.id)])
    b.queues.transition(row.queue, row.state, state)
    lifecycle.ended(b, row.id, row.queue, row.type, state, row.tries, error, row.unique_key is not None, now)
    return True


def release(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    b.workers.seen(ident, now.mono)
    accepted: list[str] = []
    refused: list[list[Any]] = []
    for i, item in enumerate(frame.body["leases"]):
        if not _well_formed(b, Kind.RELEASE, "leases", i, item, refused):
            continue
        lease = _current(b, ident, item["id"], item["token"], refused)
        if lease is not None:
            lifecycle.release(b, lease, now)
            accepted.append(lease.task_id)
    b.reply(ident, frame.corr, {"accepted": accepted, "refused": refused})


def extend(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    """Renew a running task's lease from now, by at most the queue's max_run_time."""
    b.workers.seen(ident, now.mono)
    refused: list[list[Any]] = []
    lease = _current(b, ident, frame.body["id"], frame.body["token"], refused)
    if lease is None:
        raise ProtocolError(ErrorCode.STALE_LEASE, refused[0][2])
    q = b.queues.get(lease.queue)
    granted = min(float(frame.body["seconds"]), q.max_run_time_s if q else 0.0)
    lease_s = granted + b.config.lease_grace_s
    b.leases.add(replace(lease, expires=now.mono + lease_s))
    b.store.extend(lease.task_id, now.wall + lease_s)
    b.reply(ident, frame.corr, {"run_time_s": granted})


def heartbeat(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    """A sign of life; with a corr, answered, which is the worker's proof of contact (SPEC 6.1)."""
    _registered(b, ident, now)
    if frame.corr:
        b.reply(ident, frame.corr, {})


def bye(b: Broker, ident: bytes, frame: Frame, now: Now) -> None:
    b.workers.remove(ident)


def _current(b: Broker, ident: bytes, task_id: str, token: int, refused: list[list[Any]]) -> Lease | None:
    """The task's lease if `token` is its current one and `ident` holds it; else record a refusal."""
    lease = b.leases.get(task_id)
    if lease is None or lease.token != token or lease.worker != ident:
        refused.append(_stale(task_id, token))
        return None
    return lease


def _well_formed(b: Broker, kind: Kind, field: str, i: int, item: Any, refused: list[list[Any]]) -> bool:
    """Check one item alone; a bad one is refused with its own code and the rest still apply."""
    try:
        check_item(kind, field, i, item, b.limits)
    except ProtocolError as exc:
        task_id = item.get("id") if isinstance(item, dict) else None
        refused.append([task_id if isinstance(task_id, str) else "", int(exc.code), str(exc)])
        return False
    return True


def _stale(task_id: str, token: int) -> list[Any]:
    msg = f"lease {token} of task {task_id} is no longer current (it expired or the task moved on); dropped"
    return [task_id, int(ErrorCode.STALE_LEASE), msg]


def cut(text: str | None) -> str | None:
    """A worker's error text within the protocol's limit (a worker of ours has cut it already)."""
    return None if text is None else cut_error(text)


def _registered(b: Broker, ident: bytes, now: Now) -> WorkerState:
    worker = b.workers.seen(ident, now.mono)
    if worker is None:
        raise ProtocolError(ErrorCode.NOT_REGISTERED, "this worker is not registered: send HELLO again")
    return worker


def _not_registered(b: Broker, ident: bytes) -> None:
    b.reply_error(ident, 0, ProtocolError(ErrorCode.NOT_REGISTERED, "this worker is not registered: send HELLO again"))


HANDLERS = {
    Kind.HELLO: hello,
    Kind.CREDIT: credit,
    Kind.PAUSE: pause,
    Kind.RESULTS: results,
    Kind.RELEASE: release,
    Kind.HEARTBEAT: heartbeat,
    Kind.BYE: bye,
    Kind.EXTEND: extend,
}
