"""Task states (asyncjobs' names plus `expired` and `dead`) and which of them are final."""

from __future__ import annotations

from enum import StrEnum


class TaskState(StrEnum):
    SCHEDULED = "scheduled"  # waiting for its run_at time
    BLOCKED = "blocked"  # waiting for the tasks it depends on to complete
    NEW = "new"  # waiting for its first try
    ACTIVE = "active"  # leased to a worker process
    RETRY = "retry"  # failed a try; waits for its retry time
    COMPLETE = "complete"  # a handler returned; the result is stored
    TERMINATED = "terminated"  # a handler raised TerminateTask: no more tries
    EXPIRED = "expired"  # its deadline passed before it could start
    DEAD = "dead"  # out of tries, kept with its last error
    UNREACHABLE = "unreachable"  # a task it depends on ended other than complete: never runs


FINAL_STATES = frozenset(
    {TaskState.COMPLETE, TaskState.TERMINATED, TaskState.EXPIRED, TaskState.DEAD, TaskState.UNREACHABLE}
)
WAITING_STATES = (TaskState.SCHEDULED, TaskState.BLOCKED, TaskState.NEW, TaskState.RETRY)  # not started yet

CANCELLED_ERROR = "cancelled"  # the last error of a task that a cancel ended
