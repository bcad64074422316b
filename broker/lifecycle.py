"""Task transitions after dispatch: a lease ends (complete, fail, terminate, release), and what
every final state sets off (unique locks released, dependants resolved, waiters answered, events).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ajq.broker.leases import Lease
from ajq.broker.store import TaskBrief
from ajq.protocol.clock import Now
from ajq.protocol.states import CANCELLED_ERROR, TaskState

if TYPE_CHECKING:
    from ajq.broker.core import Broker

MAX_BACKOFF_S = 600.0  # the longest wait fail_unanswered gives a try


def end_lease(b: Broker, lease: Lease) -> None:
    """The lease leaves the table, and its cancel row with it."""
    if b.leases.pop(lease.task_id):
        b.store.drop_cancels([lease.task_id])


def finish(b: Broker, lease: Lease, state: str, result: bytes | None, error: str | None, now: Now) -> None:
    """The lease ends the task: complete, terminated or dead."""
    if b.leases.cancelled(lease.task_id) and state != TaskState.COMPLETE:
        state, error = TaskState.TERMINATED, CANCELLED_ERROR
    end_lease(b, lease)
    b.store.finish([(state, result, error, now.wall, lease.task_id)])
    b.queues.transition(lease.queue, TaskState.ACTIVE, state)
    ended(b, lease.task_id, lease.queue, lease.type, state, lease.tries, error, lease.unique_key is not None, now)


def fail(b: Broker, lease: Lease, error: str, retry_in_s: float, now: Now) -> None:
    """A failed try: wait and retry, or `dead` when the queue's max_tries are used up."""
    q = b.queues.get(lease.queue)
    if b.leases.cancelled(lease.task_id) or (q is not None and q.max_tries != -1 and lease.tries >= q.max_tries):
        finish(b, lease, TaskState.DEAD, None, error, now)
        return
    end_lease(b, lease)
    ready_at = now.wall + retry_in_s
    b.store.retry([(ready_at, error, lease.task_id)])
    b.queues.transition(lease.queue, TaskState.ACTIVE, TaskState.RETRY)
    b.queues.wake(lease.queue, ready_at, now.wall)
    b.events.emit(lease.task_id, lease.queue, lease.type, TaskState.RETRY, lease.tries, error, now.wall)


def fail_unanswered(b: Broker, lease: Lease, error: str, now: Now) -> None:
    """A try that ended with no answer (its worker lost, its lease run out): the worker whose retry
    policy would apply is gone, so the queue's backoff does, doubling per try up to MAX_BACKOFF_S.
    A task that kills whatever runs it then waits longer each time instead of felling worker after worker."""
    q = b.queues.get(lease.queue)
    base = q.backoff_s if q is not None else 0.0
    fail(b, lease, error, min(MAX_BACKOFF_S, base * 2 ** max(0, min(lease.tries - 1, 32))), now)


def release(b: Broker, lease: Lease, now: Now) -> None:
    """Hand a task back without using a try (a worker shutting down before running it)."""
    if b.leases.cancelled(lease.task_id):
        finish(b, lease, TaskState.TERMINATED, None, CANCELLED_ERROR, now)
        return
    end_lease(b, lease)
    b.store.unlease([(now.wall, lease.task_id)])
    state = TaskState.RETRY if lease.tries > 1 else TaskState.NEW
    b.queues.transition(lease.queue, TaskState.ACTIVE, state)
    b.queues.ready_now(lease.queue)
    b.events.emit(lease.task_id, lease.queue, lease.type, state, lease.tries - 1, None, now.wall)


def ended(
    b: Broker, task_id: str, queue: str, task_type: str, state: str, tries: int, error: str | None, unique: bool,
    now: Now,
) -> None:  # fmt: skip
    """After any final state: release the unique lock, resolve dependants, answer waiters, tell."""
    b.finished.append(task_id)
    if unique:
        b.store.release_uniques([task_id])
    b.events.emit(task_id, queue, task_type, state, tries, error, now.wall)
    resolve_dependants(b, task_id, state, now)


def resolve_dependants(b: Broker, parent: str, state: str, now: Now) -> None:
    """Tasks blocked on `parent` run once all their parents completed; any other end makes them
    (and, in turn, their own dependants) unreachable. A worklist, not recursion: chains can be long."""
    if not b.queues.any_blocked():
        return  # a dependency link lives only while its child is blocked: none, so no query per task
    work = [(parent, state)]
    while work:
        parent, state = work.pop()
        children = b.store.take_children(parent)
        if not children:
            continue
        for child in b.store.briefs(children):
            if child.state != TaskState.BLOCKED:
                continue
            if state == TaskState.COMPLETE:
                if not b.store.has_parents(child.id):
                    b.store.make_ready([child.id], now.wall)
                    b.queues.transition(child.queue, TaskState.BLOCKED, TaskState.NEW)
                    b.queues.ready_now(child.queue)
                    b.events.emit(child.id, child.queue, child.type, TaskState.NEW, 0, None, now.wall)
                continue
            error = f"it depends on task {parent}, which ended {state}"
            b.store.drop_child(child.id)
            b.store.end_waiting([child.id], TaskState.UNREACHABLE, error, now.wall)
            b.queues.transition(child.queue, TaskState.BLOCKED, TaskState.UNREACHABLE)
            b.finished.append(child.id)
            if child.unique_key:
                b.store.release_uniques([child.id])
            b.events.emit(child.id, child.queue, child.type, TaskState.UNREACHABLE, 0, error, now.wall)
            work.append((child.id, TaskState.UNREACHABLE))


def end_unstarted(b: Broker, briefs: list[TaskBrief], state: str, error: str, now: Now) -> None:
    """End tasks that never started (cancelled or expired while waiting)."""
    if not briefs:
        return
    b.store.end_waiting([t.id for t in briefs], state, error, now.wall)
    for t in briefs:
        if t.state == TaskState.BLOCKED:
            b.store.drop_child(t.id)
        b.queues.transition(t.queue, t.state, state)
        ended(b, t.id, t.queue, t.type, state, t.tries, error, t.unique_key is not None, now)
