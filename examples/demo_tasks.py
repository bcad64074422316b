"""The demo app: a few handlers showing exact, prefix and catch-all routing."""

from __future__ import annotations

import hashlib

from ajq import Router, Task, TerminateTask

router = Router()


@router.handler("email:new")
def send_email(task: Task) -> str:
    if "to" not in task.payload:
        raise TerminateTask("payload has no 'to'")
    task.log.info("sending an email to %s", task.payload["to"])
    return f"sent to {task.payload['to']}"


@router.handler("email:")
def other_email(task: Task) -> str:
    return f"handled {task.type}"


@router.handler("hash")
def hash_rounds(task: Task) -> str:
    """CPU-bound: a chain of SHA-256 rounds."""
    data = str(task.payload.get("seed", "")).encode()
    for _ in range(int(task.payload.get("rounds", 10_000))):
        data = hashlib.sha256(data).digest()
    return data.hex()


@router.handler("")
def anything_else(task: Task) -> dict[str, object]:
    return {"type": task.type, "echo": task.payload}
