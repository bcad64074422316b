"""The client's exception tree. Every error says what to do about it."""

from __future__ import annotations

from protocol import ErrorCode


class ClientError(Exception):
    """Root of every error the client raises."""


class RequestTimeout(ClientError, TimeoutError):
    """The broker did not answer in time; whether the request was applied is unknown."""


class BrokerError(ClientError):
    """The broker refused a request; `code` is the protocol's error code."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class InvalidRequest(BrokerError):
    """The request broke a rule (a field, a size limit): fix the call."""


class TaskNotFound(BrokerError):
    pass


class QueueNotFound(BrokerError):
    pass


class ScheduleNotFound(BrokerError):
    pass


class DuplicateTask(BrokerError):
    """A task with that id exists already."""


class WaitTimeout(BrokerError, TimeoutError):
    """The task did not end within the wait."""


class BrokerFailure(BrokerError):
    """The broker could not apply the request (e.g. its disk is full); nothing changed."""


_BY_CODE: dict[ErrorCode, type[BrokerError]] = {
    ErrorCode.UNKNOWN_TASK: TaskNotFound,
    ErrorCode.UNKNOWN_QUEUE: QueueNotFound,
    ErrorCode.UNKNOWN_SCHEDULE: ScheduleNotFound,
    ErrorCode.DUPLICATE: DuplicateTask,
    ErrorCode.TIMEOUT: WaitTimeout,
    ErrorCode.INTERNAL: BrokerFailure,
}


def from_reply(code: int, message: str) -> BrokerError:
    try:
        ecode = ErrorCode(code)
    except ValueError:
        return BrokerError(ErrorCode.INTERNAL, f"unknown error code {code}: {message}")
    return _BY_CODE.get(ecode, InvalidRequest)(ecode, message)
