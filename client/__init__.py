"""The ajq client: submit tasks and read their state (sync `Client`, asyncio `AsyncClient`)."""

from client.aio import AsyncClient
from client.client import Client
from client.errors import (
    BrokerError,
    ClientError,
    DuplicateTask,
    InvalidRequest,
    QueueNotFound,
    RequestTimeout,
    ScheduleNotFound,
    TaskNotFound,
    WaitTimeout,
)
from client.models import CronInfo, QueueInfo, Submitted, TaskInfo, WorkerInfo

__all__ = [
    "AsyncClient",
    "BrokerError",
    "Client",
    "ClientError",
    "CronInfo",
    "DuplicateTask",
    "InvalidRequest",
    "QueueInfo",
    "QueueNotFound",
    "RequestTimeout",
    "ScheduleNotFound",
    "Submitted",
    "TaskInfo",
    "TaskNotFound",
    "WaitTimeout",
    "WorkerInfo",
]
