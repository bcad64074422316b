"""Retention: ended tasks are deleted once their queue's retention time has passed, and dead
tasks past their cap or age, a small batch per step so the loop never stalls."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ajq.protocol.clock import Now
from ajq.protocol.states import TaskState

if TYPE_CHECKING:
    from ajq.broker.core import Broker

BATCH = 500  # rows deleted per queue and rule in one step
EVERY_S = 1.0  # between trims when there is nothing left to trim
SOON_S = 0.01  # between trims while a backlog remains
ENDED = (TaskState.COMPLETE, TaskState.TERMINATED, TaskState.EXPIRED, TaskState.UNREACHABLE)


def trim(b: Broker, now: Now) -> float:
    """Delete one batch per queue and rule; return seconds until the next trim."""
    backlog = False
    for q in list(b.queues.values()):
        counts = b.counts[q.name]
        ended = b.store.trim(q.name, ENDED, now.wall - q.retention_s, BATCH)
        for state in ended:
            counts[state] -= 1
        dead = b.store.trim(q.name, (TaskState.DEAD,), now.wall - q.dead_retention_s, BATCH)
        counts[TaskState.DEAD] -= len(dead)
        excess = counts[TaskState.DEAD] - q.dead_max
        if excess > 0:
            counts[TaskState.DEAD] -= b.store.trim_oldest(q.name, TaskState.DEAD, min(excess, BATCH))
        backlog = backlog or len(ended) == BATCH or len(dead) == BATCH or excess > BATCH
    return SOON_S if backlog else EVERY_S
