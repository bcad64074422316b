"""A router whose retry policy answers NaN or infinity: each failed try must still be reported."""

from __future__ import annotations

from ajq import Router, Task


class BrokenPolicy:
    """delay(n) is NaN after the first try and infinity after the second: what a buggy formula gives."""

    def delay(self, n: int) -> float:
        return float("nan") if n == 1 else float("inf")


router = Router(retry=BrokenPolicy())


@router.handler("always_fail")
def always_fail(task: Task) -> None:
    raise ValueError("this handler always fails")
