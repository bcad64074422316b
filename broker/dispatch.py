"""Dispatch: push ready tasks to workers with free credit, within each queue's max_concurrent.

Each worker's credit is shared among its queues by their weights (smooth weighted round-robin:
exact shares, no randomness) or, for a `strict` worker, in priority order. Only queues marked
dirty (they may hold ready tasks) are read, so an idle broker runs no query. A queue stays dirty
until a read returns fewer tasks than asked; its next due time (retries, scheduled tasks) is
then kept by the `QueueBook`.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from typing import TYPE_CHECKING, Any

from ajq.broker import lifecycle
from ajq.broker.errors import DispatchFailed
from ajq.broker.leases import Lease
from ajq.broker.registry import WorkerState
from ajq.broker.store import ReadyTask, TaskBrief
from ajq.protocol import TaskState, decode_value
from ajq.protocol.clock import Now

if TYPE_CHECKING:
    from ajq.broker.core import Broker


def dispatch(b: Broker, now: Now, most: int) -> bool:
    """Two passes: first a task for every idle process of every worker, then prefetch credit,
    so a queue with little room runs its tasks rather than parking them in one worker's buffer.

    At most `most` leases in one step; True if it stopped there (the rest go at the next step)."""
    left = most
    for prefetch in (False, True):
        for worker in b.workers.with_credit():
            while b.queues.dirty and worker.credit > 0:
                if left <= 0:
                    return True
                idle = worker.procs - len(b.leases.held_by(worker.ident))
                budget = min(worker.credit if prefetch else min(worker.credit, idle), left)
                dirty = b.queues.dirty
                eligible = [q for q in worker.queues if q in dirty and _open(b, q) and _room(b, q) > 0]
                credit = worker.credit
                if budget <= 0 or not eligible or not _serve(b, worker, eligible, budget, now):
                    break
                left -= credit - worker.credit
    return False


def _open(b: Broker, queue: str) -> bool:
    """A dirty queue that is paused or gone leaves `dirty`: resume marks it dirty again."""
    q = b.queues.get(queue)
    if q is None or q.paused:
        b.queues.drained(queue)
        return False
    return True


def _room(b: Broker, queue: str) -> int:
    """Leases the queue may still grant now under its max_concurrent (the queue is open)."""
    return b.queues[queue].max_concurrent - b.queues.count(queue, TaskState.ACTIVE)


def _serve(b: Broker, worker: WorkerState, eligible: list[str], budget: int, now: Now) -> bool:
    """Lease tasks of `eligible` queues to `worker`. False if nothing moved (no task taken, no
    queue found drained), so the caller's loop always ends."""
    progress = False
    for queue, n in _shares(worker, eligible, budget, b).items():
        try:
            rows = b.store.ready_tasks(queue, now.wall, n)
            live, results = _with_results(b, queue, _expire_late(b, queue, rows, now), now)
            _lease(b, queue, live, results, worker, now)
        except sqlite3.Error:
            raise  # the database itself: the whole step rolls back
        except Exception as exc:
            raise DispatchFailed(queue) from exc
        progress = progress or bool(rows)
        if len(rows) < n:  # drained: nothing more is ready in this queue now
            b.queues.drained(queue)
            progress = True
            due = b.store.next_ready_at(queue)
            if due is not None:
                b.queues.wake(queue, due, now.wall)
    return progress


def _shares(worker: WorkerState, eligible: list[str], budget: int, b: Broker) -> Counter[str]:
    """How many of `budget` free slots go to each eligible queue."""
    if worker.strict or len(eligible) == 1:  # no shares to weigh: the first queue takes what it can
        first = eligible[0]
        return Counter({first: min(budget, _room(b, first))})
    rooms = {q: _room(b, q) for q in eligible}
    shares: Counter[str] = Counter()
    for _ in range(min(budget, sum(rooms.values()))):
        open_queues = [q for q in eligible if shares[q] < rooms[q]]  # a full queue takes no turn, gains no credit
        for q in open_queues:
            worker.current[q] = worker.current.get(q, 0) + worker.weights.get(q, 1)
        pick = max(open_queues, key=lambda q: worker.current[q])
        worker.current[pick] -= sum(worker.weights.get(q, 1) for q in open_queues)
        shares[pick] += 1
    return shares


def _expire_late(b: Broker, queue: str, rows: list[ReadyTask], now: Now) -> list[ReadyTask]:
    """Tasks whose deadline passed before they could start end as `expired`, never run."""
    late = [r for r in rows if r.deadline is not None and r.deadline < now.wall]
    if not late:
        return rows
    briefs = [TaskBrief(r.id, queue, r.type, r.state, r.tries, r.unique_key) for r in late]
    lifecycle.end_unstarted(b, briefs, TaskState.EXPIRED, "its deadline passed before it could start", now)
    return [r for r in rows if r.deadline is None or r.deadline >= now.wall]


def _with_results(
    b: Broker, queue: str, rows: list[ReadyTask], now: Now
) -> tuple[list[ReadyTask], dict[str, dict[str, bytes]]]:
    """The parents' results of tasks that asked for them (load_results). A task whose payload and
    parents' results would not fit in one delivery ends `terminated` instead, saying so."""
    results: dict[str, dict[str, bytes]] = {}
    too_big: list[TaskBrief] = []
    budget = b.limits.max_frame_bytes // 2
    for r in rows:
        if not (r.load_results and r.parents):
            continue
        got = {k: v if v is not None else b"\xc0" for k, v in b.store.results_of(decode_value(r.parents)).items()}
        if len(r.payload) + sum(len(v) for v in got.values()) > budget:
            too_big.append(TaskBrief(r.id, queue, r.type, r.state, r.tries, r.unique_key))
        else:
            results[r.id] = got
    if too_big:
        error = f"its parents' results are over {budget} bytes together: pass references to large data, not the data"
        lifecycle.end_unstarted(b, too_big, TaskState.TERMINATED, error, now)
        gone = {t.id for t in too_big}
        rows = [r for r in rows if r.id not in gone]
    return rows, results


def _lease(
    b: Broker, queue: str, rows: list[ReadyTask], results: dict[str, dict[str, bytes]], worker: WorkerState, now: Now
) -> None:
    if not rows:
        return
    q = b.queues[queue]
    lease_s = q.max_run_time_s + b.config.lease_grace_s
    expires_wall = now.wall + lease_s
    updates = []
    out = b.deliveries.setdefault(worker.ident, [])
    b.workers.spend(worker, len(rows))
    for row in rows:
        token = b.new_token()
        tries = row.tries + 1
        updates.append((token, expires_wall, worker.worker_id, now.wall, row.seq))
        b.leases.add(Lease(row.id, queue, row.type, token, tries, now.mono + lease_s, worker.ident, row.unique_key))
        b.events.emit(row.id, queue, row.type, TaskState.ACTIVE, tries, None, now.wall)
        item = _delivery(row, queue, token, tries, q.max_tries, q.max_run_time_s)
        if row.id in results:
            item["dependency_results"] = results[row.id]
        out.append(item)
    for state, n in Counter(row.state for row in rows).items():  # one transition per state, not per task
        b.queues.transition(queue, state, TaskState.ACTIVE, n)
    b.store.lease(updates)


def _delivery(row: ReadyTask, queue: str, token: int, tries: int, max_tries: int, run_time_s: float) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": row.id,
        "token": token,
        "type": row.type,
        "queue": queue,
        "payload": row.payload,
        "tries": tries,
        "max_tries": max_tries,
        "run_time_s": run_time_s,
    }
    if row.deadline is not None:
        item["deadline"] = row.deadline
    if row.signature is not None:
        item["signature"] = row.signature
    return item
