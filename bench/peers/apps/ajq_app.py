"""ajq's worker app: one handler, `body`."""

from __future__ import annotations

from ajq import Router, Task
from bench.peers import body

router = Router()


@router.handler("body")
def run(task: Task) -> float | None:
    p = task.payload
    return body.run(p["k"], p["id"], p["a"])
