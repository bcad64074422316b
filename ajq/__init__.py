"""ajq: a durable job queue for Python with its own broker.

Everything an app writes comes from here: `from ajq import Client, Router, TerminateTask`. The
parts live below it (`ajq.client`, `ajq.worker`, `ajq.broker`, `ajq.protocol`).
"""

from importlib.metadata import PackageNotFoundError, version

from ajq.client import (
    AsyncClient,
    BrokerFailure,
    Client,
    ClientError,
    CronInfo,
    DuplicateTask,
    InvalidArgument,
    InvalidRequest,
    QueueInfo,
    QueueNotFound,
    RequestRefused,
    RequestTimeout,
    ScheduleNotFound,
    Submitted,
    TaskInfo,
    TaskNotFound,
    WaitTimeout,
    WorkerInfo,
)
from ajq.protocol import DEFAULT_QUEUE, TaskState
from ajq.worker import (
    RETRY_DEFAULT,
    RETRY_LINEAR_ONE_HOUR,
    RETRY_LINEAR_ONE_MINUTE,
    RETRY_LINEAR_TEN_MINUTES,
    RETRY_SIDEKIQ,
    BadResult,
    ChildDied,
    HardTimeout,
    LeaseRanOut,
    NoHandler,
    RetryPolicy,
    Router,
    SidekiqPolicy,
    Task,
    TerminateTask,
    WorkerConfigError,
    WorkerError,
)

try:
    __version__ = version("ajq")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "DEFAULT_QUEUE",
    "RETRY_DEFAULT",
    "RETRY_LINEAR_ONE_HOUR",
    "RETRY_LINEAR_ONE_MINUTE",
    "RETRY_LINEAR_TEN_MINUTES",
    "RETRY_SIDEKIQ",
    "AsyncClient",
    "BadResult",
    "BrokerFailure",
    "ChildDied",
    "Client",
    "ClientError",
    "CronInfo",
    "DuplicateTask",
    "HardTimeout",
    "InvalidArgument",
    "InvalidRequest",
    "LeaseRanOut",
    "NoHandler",
    "QueueInfo",
    "QueueNotFound",
    "RequestRefused",
    "RequestTimeout",
    "RetryPolicy",
    "Router",
    "ScheduleNotFound",
    "SidekiqPolicy",
    "Submitted",
    "Task",
    "TaskInfo",
    "TaskNotFound",
    "TaskState",
    "TerminateTask",
    "WaitTimeout",
    "WorkerConfigError",
    "WorkerError",
    "WorkerInfo",
    "__version__",
]
