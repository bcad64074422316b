"""Dispatch: push ready tasks to workers with free credit, within each queue's max_concurrent.

Only queues marked dirty (they may hold ready tasks) are read, so an idle broker runs no query.
A queue stays dirty until a read returns fewer tasks than asked: then it has none ready now, and
its next due time (retries) is kept in `next_ready`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker.leases import Lease
from broker.registry import WorkerState
from broker.store import ReadyTask
from protocol.clock import Now

if TYPE_CHECKING:
    from broker.core import Broker


def dispatch(b: Broker, now: Now) -> None:
    for name in list(b.dirty):
        q = b.queues.get(name)
        if q is None or q.paused:
            b.dirty.discard(name)
            continue
        room = q.max_concurrent - b.counts[name]["active"]
        workers = b.workers.with_credit(name) if room > 0 else []
        if not workers:
            continue
        want = min(room, sum(w.credit for w in workers))
        rows = b.store.ready_tasks(name, now.wall, want)
        live = _expire_late(b, name, rows, now)
        _lease(b, name, live, workers, now)
        if len(rows) < want:
            b.dirty.discard(name)
            due = b.store.next_ready_at(name)
            if due is not None:
                b.wake_queue(name, due, now)


def _expire_late(b: Broker, queue: str, rows: list[ReadyTask], now: Now) -> list[ReadyTask]:
    """Tasks whose deadline passed before they could start end as `expired`, never run."""
    late = [r for r in rows if r.deadline is not None and r.deadline < now.wall]
    if not late:
        return rows
    b.store.expire_unstarted([r.seq for r in late], now.wall)
    for r in late:
        b.move(queue, "retry" if r.tries else "new", "expired")
        b.finished.append(r.id)
    return [r for r in rows if r.deadline is None or r.deadline >= now.wall]


def _lease(b: Broker, queue: str, rows: list[ReadyTask], workers: list[WorkerState], now: Now) -> None:
    if not rows:
        return
    q = b.queues[queue]
    lease_s = q.max_run_time_s + b.config.lease_grace_s
    expires_wall = now.wall + lease_s
    updates = []
    turn = 0
    for row in rows:
        while workers[turn % len(workers)].credit <= 0:
            turn += 1
        worker = workers[turn % len(workers)]
        turn += 1
        worker.credit -= 1
        token = b.new_token()
        tries = row.tries + 1
        updates.append((token, expires_wall, worker.worker_id, now.wall, row.seq))
        b.leases.add(Lease(row.id, queue, token, tries, now.mono + lease_s, worker.ident))
        worker.running.add(row.id)
        b.move(queue, "retry" if row.tries else "new", "active")
        item = {
            "id": row.id,
            "token": token,
            "type": row.type,
            "queue": queue,
            "payload": row.payload,
            "tries": tries,
            "max_tries": q.max_tries,
            "run_time_s": q.max_run_time_s,
        }
        if row.deadline is not None:
            item["deadline"] = row.deadline
        b.deliveries.setdefault(worker.ident, []).append(item)
    b.store.lease(updates)
