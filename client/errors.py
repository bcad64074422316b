"""The client's exception tree. Every error says what to do about it."""

from __future__ import annotations

from ajq.protocol import ErrorCode


class ClientError(Exception):
    """Root of every error the client raises."""


class InvalidArgument(ClientError, ValueError):
    """An argument of a client call is not usable (nothing was sent): the message says what to give."""


class RequestTimeout(ClientError, TimeoutError):
    """The broker did not answer in time; whether the request was applied is unknown."""


class RequestRefused(ClientError):
    """The broker answered the request with an error; `code` is the protocol's error code."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class InvalidRequest(RequestRefused):
    """The request broke a rule (a field, a size limit): fix the call."""


class TaskNotFound(RequestRefused):
    """No task has that id: it was never submitted, or retention or `delete` removed it."""


class QueueNotFound(RequestRefused):
    """No queue has that name: submit to it, or `configure_queue` it, first."""


class ScheduleNotFound(RequestRefused):
    """No cron schedule has that name: list them with `crons()`."""


class DuplicateTask(RequestRefused):
    """A task with that id exists already."""


class WaitTimeout(RequestRefused, TimeoutError):
    """The task did not end within the wait."""


class Forbidden(RequestRefused):
    """The broker admits this client's key, but not for this request: it needs a key of another role."""


class BrokerFailure(RequestRefused):
    """The broker could not apply the request (e.g. its disk is full); nothing changed."""


_BY_CODE: dict[ErrorCode, type[RequestRefused]] = {
    ErrorCode.UNKNOWN_TASK: TaskNotFound,
    ErrorCode.UNKNOWN_QUEUE: QueueNotFound,
    ErrorCode.UNKNOWN_SCHEDULE: ScheduleNotFound,
    ErrorCode.DUPLICATE: DuplicateTask,
    ErrorCode.TIMEOUT: WaitTimeout,
    ErrorCode.INTERNAL: BrokerFailure,
    ErrorCode.FORBIDDEN: Forbidden,
}


def from_reply(code: int, message: str) -> RequestRefused:
    try:
        ecode = ErrorCode(code)
    except ValueError:
        return RequestRefused(ErrorCode.INTERNAL, f"unknown error code {code}: {message}")
    return _BY_CODE.get(ecode, InvalidRequest)(ecode, message)
