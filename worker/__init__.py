"""ajworker: a supervisor and a pool of forked processes running the app's task handlers."""

from ajq.worker.errors import (
    BadResult,
    ChildDied,
    HardTimeout,
    LeaseRanOut,
    NoHandler,
    TerminateTask,
    WorkerConfigError,
    WorkerError,
)
from ajq.worker.retry import (
    RETRY_DEFAULT,
    RETRY_LINEAR_ONE_HOUR,
    RETRY_LINEAR_ONE_MINUTE,
    RETRY_LINEAR_TEN_MINUTES,
    RETRY_SIDEKIQ,
    RetryPolicy,
    SidekiqPolicy,
)
from ajq.worker.router import Router
from ajq.worker.task import Task

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
    "WorkerConfigError",
    "WorkerError",
]
