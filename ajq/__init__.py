"""ajq: a durable job queue for Python with its own broker.

Everything an app writes comes from here: `from ajq import Client, Router, TerminateTask`. The
parts live below it (`ajq.client`, `ajq.worker`, `ajq.broker`, `ajq.protocol`).

Names load on first use (PEP 562), so `ajbroker` importing `ajq.broker` does not load the client
and the worker, and a client does not load the worker: each process holds only its own part.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the same names, for type checkers and editors
    from ajq.client import (
        AsyncClient,
        BrokerFailure,
        Client,
        ClientError,
        CronInfo,
        DuplicateTask,
        Forbidden,
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

    __version__: str

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
    "Forbidden",
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

# Where each public name lives (a test checks this against __all__).
_PARTS = {
    "ajq.protocol": ("DEFAULT_QUEUE", "TaskState"),
    "ajq.client": (
        "AsyncClient", "BrokerFailure", "Client", "ClientError", "CronInfo", "DuplicateTask", "Forbidden",
        "InvalidArgument",
        "InvalidRequest", "QueueInfo", "QueueNotFound", "RequestRefused", "RequestTimeout", "ScheduleNotFound",
        "Submitted", "TaskInfo", "TaskNotFound", "WaitTimeout", "WorkerInfo",
    ),
    "ajq.worker": (
        "RETRY_DEFAULT", "RETRY_LINEAR_ONE_HOUR", "RETRY_LINEAR_ONE_MINUTE", "RETRY_LINEAR_TEN_MINUTES",
        "RETRY_SIDEKIQ", "BadResult", "ChildDied", "HardTimeout", "LeaseRanOut", "NoHandler", "RetryPolicy",
        "Router", "SidekiqPolicy", "Task", "TerminateTask", "WorkerConfigError", "WorkerError",
    ),
}  # fmt: skip
_HOME = {name: part for part, names in _PARTS.items() for name in names}


def __getattr__(name: str) -> Any:
    """Load a public name from its part on first use, and keep it here."""
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value: Any = version("ajq")
        except PackageNotFoundError:  # imported from a source tree that was never installed
            value = "0+unknown"
    elif name in _HOME:
        value = getattr(importlib.import_module(_HOME[name]), name)
    else:
        raise AttributeError(f"module 'ajq' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
