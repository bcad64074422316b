"""Error codes carried by ERROR replies and per-task refusals, and the protocol's exception."""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """Closed set of error codes; the number is what travels on the wire."""

    BAD_FRAME = 1  # not msgpack, wrong shape, wrong frame count
    BAD_VERSION = 2  # protocol version this broker does not speak
    UNKNOWN_KIND = 3  # message kind nobody defined
    TOO_LARGE = 4  # frame, payload or batch over the limit
    BAD_FIELD = 5  # a field missing, of the wrong type or out of range
    UNKNOWN_QUEUE = 6
    UNKNOWN_TASK = 7
    STALE_LEASE = 8  # answer for a lease that is no longer the task's current one
    TIMEOUT = 9  # a WAIT that ran out before the task ended
    NOT_REGISTERED = 10  # a worker message from a peer that sent no HELLO
    INTERNAL = 11  # the broker failed to apply a valid request (e.g. disk full); nothing changed
    DUPLICATE = 12  # a task id that already exists
    UNKNOWN_SCHEDULE = 13
    FORBIDDEN = 14  # the sender's key does not have the role this message needs


class ProtocolError(Exception):
    """A message that breaks the protocol; `code` says which rule, the text says how to fix it."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.name.lower()}: {self.message}"
