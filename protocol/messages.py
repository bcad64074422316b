"""Every message kind, who sends it, and the fields its body must have (checked on receipt).

A body is a msgpack map. Unknown fields are refused: a peer that wants new fields speaks a new
protocol version. Field specs are (types, required, check); `check` returns an error text or None.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from ajq.protocol.errors import ErrorCode, ProtocolError
from ajq.protocol.limits import MAX_HOST_CHARS, MAX_NAME_CHARS, MAX_WORKER_PROCS, Limits


class Kind(StrEnum):
    # client -> broker (each answered by REPLY or ERROR with the same correlation id)
    SUBMIT = "submit"
    GET = "get"
    WAIT = "wait"
    QUEUE_LIST = "queue_list"
    QUEUE_INFO = "queue_info"
    QUEUE_CONFIGURE = "queue_configure"
    WORKERS = "workers"
    INFO = "info"
    CANCEL = "cancel"  # client -> broker: cancel a task; broker -> worker: kill the lease's process
    TASK_LIST = "task_list"
    TASK_RETRY = "task_retry"
    TASK_DELETE = "task_delete"
    QUEUE_PAUSE = "queue_pause"
    QUEUE_RESUME = "queue_resume"
    QUEUE_PURGE = "queue_purge"
    QUEUE_DELETE = "queue_delete"
    CRON_ADD = "cron_add"
    CRON_LIST = "cron_list"
    CRON_GET = "cron_get"
    CRON_DELETE = "cron_delete"
    # worker -> broker
    HELLO = "hello"  # answered by REPLY (the welcome)
    CREDIT = "credit"  # n more free slots; no reply
    PAUSE = "pause"  # credit back to zero; no reply
    RESULTS = "results"  # answered by REPLY listing accepted and refused leases
    RELEASE = "release"  # unstarted tasks handed back; answered like RESULTS
    HEARTBEAT = "heartbeat"  # both ways; a worker's with a corr is answered (its proof of contact)
    BYE = "bye"  # the worker leaves; no reply
    EXTEND = "extend"  # renew a running task's lease (a handler's task.extend); answered by REPLY
    # broker -> peers
    REPLY = "reply"
    ERROR = "error"
    DELIVER = "deliver"


Check = Callable[[Any], "str | None"]
FieldSpec = tuple[type | tuple[type, ...], bool, Check | None]
NUMBER = (int, float)


# Names, types and hosts are printable: no NUL (the unique lock joins queue and type with it), no
# newline or escape (they are written to logs), no other control or separator character but space.
PRINTABLE = "printable characters (no control characters such as NUL, tab or newline)"


def _name(value: str) -> str | None:
    if not value or len(value) > MAX_NAME_CHARS or not value.isprintable():
        return f"must be 1 to {MAX_NAME_CHARS} {PRINTABLE}"
    return None


def _type_name(value: str) -> str | None:
    if len(value) > MAX_NAME_CHARS or not value.isprintable():
        return f"must be at most {MAX_NAME_CHARS} {PRINTABLE}"
    return None


def _host(value: str) -> str | None:
    if len(value) > MAX_HOST_CHARS or not value.isprintable():
        return f"must be at most {MAX_HOST_CHARS} {PRINTABLE}"
    return None


def _non_negative(value: float) -> str | None:
    return "must be zero or more" if value < 0 else None


def _positive(value: float) -> str | None:
    return "must be more than zero" if value <= 0 else None


def _procs(value: int) -> str | None:
    return None if 1 <= value <= MAX_WORKER_PROCS else f"must be from 1 to {MAX_WORKER_PROCS}"


def _tries(value: int) -> str | None:
    return "must be -1 (unlimited) or more than zero" if value == 0 or value < -1 else None


def _page(value: int) -> str | None:
    return None if 1 <= value <= 1000 else "must be from 1 to 1000"


def _outcome(value: str) -> str | None:
    return None if value in ("complete", "fail", "terminate") else "must be complete, fail or terminate"


def _signature(value: bytes) -> str | None:
    return None if len(value) == 64 else "must be a 64-byte ed25519 signature"


def _names(value: list[Any]) -> str | None:
    if not value or not all(isinstance(v, str) and _name(v) is None for v in value):
        return f"must be a non-empty list of names of 1 to {MAX_NAME_CHARS} {PRINTABLE}"
    return None


def _ids(value: list[Any]) -> str | None:
    if not all(isinstance(v, str) and _name(v) is None for v in value) or len(value) > 1000:
        return "must be a list of at most 1000 task ids"
    return None


def _weights(value: list[Any]) -> str | None:
    if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1000 for v in value):
        return "must be a list of integers from 1 to 1000"
    return None


SUBMIT_TASK: dict[str, FieldSpec] = {
    "type": (str, True, _type_name),
    "payload": (bytes, True, None),
    "id": (str, False, _name),
    "deadline": (NUMBER, False, _positive),
    "run_at": (NUMBER, False, _positive),  # wall time: state 'scheduled' until then
    "unique_for_s": (NUMBER, False, _positive),
    "depends_on": (list, False, _ids),
    "load_results": (bool, False, None),
    "signature": (bytes, False, _signature),  # ed25519 over id, queue, type, payload (protocol/signing.py)
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
    "dependency_results": (dict, False, None),  # parent id -> its result (msgpack bytes)
    "signature": (bytes, False, None),
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
        "retention_s": (NUMBER, False, _non_negative),
        "dead_max": (int, False, _non_negative),
        "dead_retention_s": (NUMBER, False, _non_negative),
        "backoff_s": (NUMBER, False, _non_negative),
    },
    Kind.WORKERS: {},
    Kind.INFO: {},
    Kind.CANCEL: {"id": (str, True, _name), "token": (int, False, None)},
    Kind.TASK_LIST: {
        "queue": (str, False, _name),
        "state": (str, False, None),
        "type": (str, False, None),
        "limit": (int, False, _page),
        "before": (int, False, None),  # page: tasks submitted before this sequence number
    },
    Kind.TASK_RETRY: {"id": (str, True, _name)},
    Kind.TASK_DELETE: {"id": (str, True, _name)},
    Kind.QUEUE_PAUSE: {"name": (str, True, _name)},
    Kind.QUEUE_RESUME: {"name": (str, True, _name)},
    Kind.QUEUE_PURGE: {"name": (str, True, _name)},
    Kind.QUEUE_DELETE: {"name": (str, True, _name), "force": (bool, False, None)},
    Kind.CRON_ADD: {
        "name": (str, True, _name),
        "cron": (str, True, None),
        "type": (str, True, _type_name),
        "payload": (bytes, True, None),
        "queue": (str, True, _name),
    },
    Kind.CRON_LIST: {},
    Kind.CRON_GET: {"name": (str, True, _name)},
    Kind.CRON_DELETE: {"name": (str, True, _name)},
    Kind.HELLO: {
        "worker_id": (str, True, _name),
        "host": (str, True, _host),
        "pid": (int, True, None),
        "procs": (int, True, _procs),
        "queues": (list, True, _names),
        "weights": (list, False, _weights),  # one per queue; absent: all 1
        "strict": (bool, False, None),  # serve a queue only when every earlier one is empty
    },
    Kind.CREDIT: {"n": (int, True, _positive)},
    Kind.PAUSE: {},
    Kind.RESULTS: {"results": (list, True, None), "credit": (int, False, _non_negative)},
    Kind.RELEASE: {"leases": (list, True, None)},
    Kind.HEARTBEAT: {},
    Kind.BYE: {},
    Kind.EXTEND: {"id": (str, True, _name), "token": (int, True, None), "seconds": (NUMBER, True, _positive)},
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

# Batches whose items are independent answers about leases: the receiver checks each item alone
# (check_item) and refuses a bad one by itself, so one bad outcome never costs the others.
ITEMS_ALONE = frozenset({(Kind.RESULTS, "results"), (Kind.RELEASE, "leases")})


def check_fields(where: str, body: Any, spec: dict[str, FieldSpec]) -> None:
    """Raise BAD_FIELD unless `body` is a map with exactly the fields `spec` allows.

    It walks the body's own keys (few) rather than every field the spec allows (many): this runs
    once per task in a batch, so it is on the hot path."""
    if not isinstance(body, dict):
        raise ProtocolError(ErrorCode.BAD_FIELD, f"{where} must be a map")
    for name in _required(spec):
        if name not in body:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"{where} lacks the field '{name}'")
    for name, value in body.items():
        field = spec.get(name)
        if field is None:
            extra = sorted(str(k) for k in body if k not in spec)
            raise ProtocolError(ErrorCode.BAD_FIELD, f"{where} has unknown fields {extra}")
        _check_value(where, name, value, field)


def _check_value(where: str, name: str, value: Any, field: FieldSpec) -> None:
    types, _, check = field
    if not isinstance(value, types) or (isinstance(value, bool) and types not in (bool, object)):
        raise ProtocolError(ErrorCode.BAD_FIELD, f"{where} field '{name}' has the wrong type ({type(value).__name__})")
    if isinstance(value, float) and not math.isfinite(value):
        raise ProtocolError(ErrorCode.BAD_FIELD, f"{where} field '{name}' must be a finite number")
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise ProtocolError(ErrorCode.BAD_FIELD, f"{where} field '{name}' is out of the 64-bit range")
    problem = check(value) if check else None
    if problem:
        raise ProtocolError(ErrorCode.BAD_FIELD, f"{where} field '{name}' {problem}")


_REQUIRED: dict[int, tuple[str, ...]] = {}


def _required(spec: dict[str, FieldSpec]) -> tuple[str, ...]:
    """The required field names of a spec (specs are module constants: cached by identity)."""
    names = _REQUIRED.get(id(spec))
    if names is None:
        names = _REQUIRED[id(spec)] = tuple(n for n, (_, required, _) in spec.items() if required)
    return names


def check_body(kind: Kind, body: Any, limits: Limits) -> None:
    """Validate a whole body, including each item of its batches and the payload sizes."""
    check_fields(kind.value, body, BODIES[kind])
    for item_kind, field in ITEMS:
        if item_kind is not kind:
            continue
        items = body[field]
        if not items:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"{kind.value} field '{field}' is empty")
        if len(items) > limits.max_batch:
            raise ProtocolError(
                ErrorCode.TOO_LARGE,
                f"{kind.value} has {len(items)} {field}, more than the limit of {limits.max_batch}"
                f"{limits.named('max_batch')}: split it",
            )
        if (kind, field) in ITEMS_ALONE:
            continue
        plain = kind is Kind.SUBMIT
        for i, item in enumerate(items):
            if not (plain and _plain_task(item, limits.max_payload_bytes)):
                check_item(kind, field, i, item, limits)


def _plain_task(item: Any, most: int) -> bool:
    """A SUBMIT task of the common shape, {type, payload}, and valid: a few operations instead of
    the generic walk. It accepts only what check_item accepts; anything else goes to check_item,
    which names what is wrong. (Bulk submits run this once per task: 10,000 a message.)"""
    if type(item) is not dict or len(item) != 2:
        return False
    name, payload = item.get("type"), item.get("payload")
    return (
        type(name) is str
        and type(payload) is bytes
        and len(name) <= MAX_NAME_CHARS
        and name.isprintable()
        and len(payload) <= most
    )


def check_item(kind: Kind, field: str, i: int, item: Any, limits: Limits) -> None:
    """Validate item `i` of the batch `field` of a `kind` body: its fields and its sizes."""
    check_fields(f"{kind.value} {field}[{i}]", item, ITEMS[(kind, field)])
    _check_sizes(kind, field, i, item, limits)


def _check_sizes(kind: Kind, field: str, i: int, item: dict[str, Any], limits: Limits) -> None:
    for name in ("payload", "result"):
        blob = item.get(name)
        if blob is not None and len(blob) > limits.max_payload_bytes:
            raise ProtocolError(
                ErrorCode.TOO_LARGE,
                f"{kind.value} {field}[{i}] {name} is {len(blob)} bytes, over the limit of "
                f"{limits.max_payload_bytes}{limits.named('max_payload_bytes')}: store large data elsewhere "
                "and pass a reference",
            )
