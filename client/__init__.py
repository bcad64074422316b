"""The ajq client: submit tasks and read their state (sync `Client`, asyncio `AsyncClient`)."""

from ajq.client.aio import AsyncClient
from ajq.client.client import Client
from ajq.client.errors import (
    BrokerFailure,
    ClientError,
    DuplicateTask,
    Forbidden,
    InvalidArgument,
    InvalidRequest,
    QueueNotFound,
    RequestRefused,
    RequestTimeout,
    ScheduleNotFound,
    TaskNotFound,
    WaitTimeout,
)
from ajq.client.models import CronInfo, QueueInfo, Submitted, TaskInfo, WorkerInfo

__all__ = [
    "AsyncClient",
    "BrokerFailure",
    "Client",
    "ClientError",
    "CronInfo",
    "DuplicateTask",
    "Forbidden",
    "InvalidArgument",
    "InvalidRequest",
    "QueueInfo",
    "QueueNotFound",
    "RequestRefused",
    "RequestTimeout",
    "ScheduleNotFound",
    "Submitted",
    "TaskInfo",
    "TaskNotFound",
    "WaitTimeout",
    "WorkerInfo",
]
