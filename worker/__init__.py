"""ajworker: a supervisor and a pool of forked processes running the app's task handlers."""

from worker.errors import BadResult, ChildDied, HardTimeout, LeaseRanOut, NoHandler, TerminateTask, WorkerError
from worker.retry import (
    RETRY_DEFAULT,
    RETRY_LINEAR_ONE_HOUR,
    RETRY_LINEAR_ONE_MINUTE,
    RETRY_LINEAR_TEN_MINUTES,
    RETRY_SIDEKIQ,
    RetryPolicy,
    SidekiqPolicy,
)
from worker.router import Router
from worker.task import Task

__all__ = [
    "RETRY_DEFAULT",
    "RETRY_LINEAR_ONE_HOUR",
    "RETRY_LINEAR_ONE_MINUTE",
    "RETRY_LINEAR_TEN_MINUTES",
    "RETRY_SIDEKIQ",
    "BadResult",
    "ChildDied",
    "HardTimeout",
    "LeaseRanOut",
    "NoHandler",
    "RetryPolicy",
    "Router",
    "SidekiqPolicy",
    "Task",
    "TerminateTask",
    "WorkerError",
]
