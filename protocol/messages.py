"""Every message kind, who sends it, and the fields its body must have (checked on receipt).

A body is a msgpack map. Unknown fields are refused: a peer that wants new fields speaks a new
protocol version. Field specs are (types, required, check); `check` returns an error text or None.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from protocol.errors import ErrorCode, ProtocolError
from protocol.limits import MAX_NAME_CHARS, Limits


class Kind(StrEnum):
    # client -> broker (each answered by REPLY or ERROR with the same correlation id)
    SUBMIT = "submit"
    GET = "get"
    WAIT = "wait"
    QUEUE_LIST = "queue_list"
    QUEUE_INFO = "queue_info"
    QUEUE_CONFIGURE = "queue_configure"
    WORKERS = "workers"
    # worker -> broker
    HELLO = "hello"  # answered by REPLY (the welcome)
    CREDIT = "credit"  # n more free slots; no reply
    PAUSE = "pause"  # credit back to zero; no reply
    RESULTS = "results"  # answered by REPLY listing accepted and refused leases
    RELEASE = "release"  # unstarted tasks handed back; answered like RESULTS
    HEARTBEAT = "heartbeat"  # both ways; no reply
    BYE = "bye"  # the worker leaves; no reply
    # broker -> peers
    REPLY = "reply"
    ERROR = "error"
    DELIVER = "deliver"


Check = Callable[[Any], "str | None"]
FieldSpec = tuple[type | tuple[type, ...], bool, Check | None]
NUMBER = (int, float)


def _name(value: str) -> str | None:
    if not value or len(value) > MAX_NAME_CHARS:
        return f"must be 1 to {MAX_NAME_CHARS} characters"
    return None


def _type_name(value: str) -> str | None:
    return f"must be at most {MAX_NAME_CHARS} characters" if len(value) > MAX_NAME_CHARS else None


def _non_negative(value: float) -> str | None:
    return "must be zero or more" if value < 0 else None


def _positive(value: float) -> str | None:
    return "must be more than zero" if value <= 0 else None


def _tries(value: int) -> str | None:
    return "must be -1 (unlimited) or more than zero" if value == 0 or value < -1 else None


def _outcome(value: str) -> str | None:
    return None if value in ("complete", "fail", "terminate") else "must be complete, fail or terminate"


def _names(value: list[Any]) -> str | None:
    if not value or not all(isinstance(v, str) and _name(v) is None for v in value):
        return f"must be a non-empty list of names of 1 to {MAX_NAME_CHARS} characters"
    return None


SUBMIT_TASK: dict[str, FieldSpec] = {
    "type": (str, True, _type_name),
    "payload": (bytes, True, None),
    "id": (str, False, _name),
    "deadline": (NUMBER, False, _positive),
}

RESULT_ITEM: dict[str, FieldSpec] = {
    "id": (str, True, _name),
    "token": (int, True, None),
    "outcome": (str, True, _outcome),
    "result": (bytes, False, None),
    "error": (str, False, None),  # stored cut to MAX_ERROR_CHARS
    "retry_in_s": (NUMBER, False, _non_negative),
}

LEASE_ITEM: dict[str, FieldSpec] = {"id": (str, True, _name), "token": (int, True, None)}

DELIVER_ITEM: dict[str, FieldSpec] = {
    "id": (str, True, None),
    "token": (int, True, None),
    "type": (str, True, None),
    "queue": (str, True, None),
    "payload": (bytes, True, None),
    "tries": (int, True, None),
    "max_tries": (int, True, None),
    "run_time_s": (NUMBER, True, None),
    "deadline": (NUMBER, False, None),
}

BODIES: dict[Kind, dict[str, FieldSpec]] = {
    Kind.SUBMIT: {"queue": (str, True, _name), "tasks": (list, True, None)},
    Kind.GET: {"id": (str, True, _name)},
    Kind.WAIT: {"id": (str, True, _name), "timeout_s": (NUMBER, True, _non_negative)},
    Kind.QUEUE_LIST: {},
    Kind.QUEUE_INFO: {"name": (str, True, _name)},
    Kind.QUEUE_CONFIGURE: {
        "name": (str, True, _name),
        "max_concurrent": (int, False, _positive),
        "max_run_time_s": (NUMBER, False, _positive),
        "max_tries": (int, False, _tries),
    },
    Kind.WORKERS: {},
    Kind.HELLO: {
        "worker_id": (str, True, _name),
        "host": (str, True, None),
        "pid": (int, True, None),
        "procs": (int, True, _positive),
        "queues": (list, True, _names),
    },
    Kind.CREDIT: {"n": (int, True, _positive)},
    Kind.PAUSE: {},
    Kind.RESULTS: {"results": (list, True, None), "credit": (int, False, _non_negative)},
    Kind.RELEASE: {"leases": (list, True, None)},
    Kind.HEARTBEAT: {},
    Kind.BYE: {},
    Kind.REPLY: {"data": (object, True, None)},
    Kind.ERROR: {"code": (int, True, None), "message": (str, True, None), "index": (int, False, None)},
    Kind.DELIVER: {"tasks": (list, True, None)},
}

# Lists of maps inside a body, checked item by item, with the batch limit.
ITEMS: dict[tuple[Kind, str], dict[str, FieldSpec]] = {
    (Kind.SUBMIT, "tasks"): SUBMIT_TASK,
    (Kind.RESULTS, "results"): RESULT_ITEM,
    (Kind.RELEASE, "leases"): LEASE_ITEM,
    (Kind.DELIVER, "tasks"): DELIVER_ITEM,
}


def check_fields(where: str, body: Any, spec: dict[str, FieldSpec]) -> None:
    """Raise BAD_FIELD unless `body` is a map with exactly the fields `spec` allows."""
    if not isinstance(body, dict):
        raise ProtocolError(ErrorCode.BAD_FIELD, f"{where} must be a map")
    for name, (types, required, check) in spec.items():
        if name not in body:
            if required:
                raise ProtocolError(ErrorCode.BAD_FIELD, f"{where} lacks the field '{name}'")
            continue
        value = body[name]
        if not isinstance(value, types) or (isinstance(value, bool) and types is not object):
            raise ProtocolError(
                ErrorCode.BAD_FIELD, f"{where} field '{name}' has the wrong type ({type(value).__name__})"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ProtocolError(ErrorCode.BAD_FIELD, f"{where} field '{name}' must be a finite number")
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"{where} field '{name}' is out of the 64-bit range")
        problem = check(value) if check else None
        if problem:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"{where} field '{name}' {problem}")
    if len(body) > len(spec) or any(k not in spec for k in body):
        extra = sorted(str(k) for k in body if k not in spec)
        raise ProtocolError(ErrorCode.BAD_FIELD, f"{where} has unknown fields {extra}")


def check_body(kind: Kind, body: Any, limits: Limits) -> None:
    """Validate a whole body, including each item of its batches and the payload sizes."""
    check_fields(kind.value, body, BODIES[kind])
    for (item_kind, field), spec in ITEMS.items():
        if item_kind is not kind:
            continue
        items = body[field]
        if not items:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"{kind.value} field '{field}' is empty")
        if len(items) > limits.max_batch:
            raise ProtocolError(
                ErrorCode.TOO_LARGE,
                f"{kind.value} has {len(items)} {field}, more than the limit of {limits.max_batch}: split it",
            )
        for i, item in enumerate(items):
            check_fields(f"{kind.value} {field}[{i}]", item, spec)
            _check_sizes(kind, field, i, item, limits)


def _check_sizes(kind: Kind, field: str, i: int, item: dict[str, Any], limits: Limits) -> None:
    for name in ("payload", "result"):
        blob = item.get(name)
        if blob is not None and len(blob) > limits.max_payload_bytes:
            raise ProtocolError(
                ErrorCode.TOO_LARGE,
                f"{kind.value} {field}[{i}] {name} is {len(blob)} bytes, over the limit of "
                f"{limits.max_payload_bytes}: store large data elsewhere and pass a reference",
            )
