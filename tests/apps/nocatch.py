"""A router with no catch-all: other types have no handler."""

from ajq import RetryPolicy, Router, Task

router = Router(retry=RetryPolicy([0.05]))


@router.handler("echo")
def echo(task: Task) -> object:
    return task.payload
