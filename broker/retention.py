"""Retention: ended tasks are deleted once their queue's retention time has passed, and dead
tasks past their cap or age, a small batch per step so the loop never stalls.

A queue with nothing ended costs nothing: it is skipped from its in-memory counts, and a queue
whose oldest ended task is not yet due waits, without a query, until it is."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from ajq.broker.store import QueueRow
from ajq.protocol.clock import Now
from ajq.protocol.states import TaskState

if TYPE_CHECKING:
    from ajq.broker.core import Broker

BATCH = 500  # rows deleted per queue and rule in one step
EVERY_S = 1.0  # between passes when there is nothing left to trim
SOON_S = 0.01  # between passes while a backlog remains
ENDED = (TaskState.COMPLETE, TaskState.TERMINATED, TaskState.EXPIRED, TaskState.UNREACHABLE)


class Retention:
    """When each queue's next ended task falls due, so a pass queries only queues with work."""

    def __init__(self) -> None:
        self._due: dict[str, float] = {}  # queue -> wall time its oldest ended or dead task is due

    def forget(self, queue: str | None = None) -> None:
        """Recompute `queue`'s due time at the next pass (all queues: None), after its settings
        changed, it was deleted, or a step rolled back."""
        if queue is None:
            self._due.clear()
        else:
            self._due.pop(queue, None)

    def trim(self, b: Broker, now: Now) -> float:
        """Delete one batch per due queue and rule; return seconds until the next pass."""
        backlog = False
        for q in b.queues:
            ended = sum(b.queues.count(q.name, s) for s in ENDED)
            dead = b.queues.count(q.name, TaskState.DEAD)
            if not ended and not dead:
                self._due.pop(q.name, None)
                continue
            if self._due.get(q.name, now.wall) > now.wall and dead <= q.dead_max:
                continue
            full = self._trim_queue(b, q, now)
            backlog = backlog or full
            self._due[q.name] = now.wall if full else self._next_due(b, q, now)
        return SOON_S if backlog else EVERY_S

    def _trim_queue(self, b: Broker, q: QueueRow, now: Now) -> bool:
        """One batch of each rule for `q`; True when a rule has more to delete."""
        queues = b.queues
        ended: list[str] = []
        if any(queues.count(q.name, s) for s in ENDED):
            ended = b.store.trim(q.name, ENDED, now.wall - q.retention_s, BATCH)
        for state, n in Counter(ended).items():
            queues.transition(q.name, state, None, n)
        dead: list[str] = []
        if queues.count(q.name, TaskState.DEAD):
            dead = b.store.trim(q.name, (TaskState.DEAD,), now.wall - q.dead_retention_s, BATCH)
            queues.transition(q.name, TaskState.DEAD, None, len(dead))
        excess = queues.count(q.name, TaskState.DEAD) - q.dead_max
        if excess > 0:
            trimmed = b.store.trim_oldest(q.name, TaskState.DEAD, min(excess, BATCH))
            queues.transition(q.name, TaskState.DEAD, None, trimmed)
        return len(ended) == BATCH or len(dead) == BATCH or excess > BATCH

    def _next_due(self, b: Broker, q: QueueRow, now: Now) -> float:
        """When `q`'s oldest remaining ended or dead task passes its retention (never before a second)."""
        keep = [(s, q.retention_s) for s in ENDED] + [(TaskState.DEAD, q.dead_retention_s)]
        due = [
            t + seconds
            for s, seconds in keep
            if b.queues.count(q.name, s) and (t := b.store.oldest_finished(q.name, s)) is not None
        ]
        return max(now.wall + EVERY_S, min(due, default=now.wall + EVERY_S))
