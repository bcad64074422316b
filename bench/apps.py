"""The worker app the benchmarks run: a no-op, a start-time stamp and a calibrated CPU spin."""

from __future__ import annotations

import time

from ajq import Router, Task

router = Router()


def spin(n: int) -> int:
    """Pure-Python CPU work: n loop iterations, no I/O and no allocation worth noting."""
    x = 0
    for i in range(n):
        x = (x + i * i) % 1_000_003
    return x


@router.handler("noop")
def noop(task: Task) -> None:
    """Do nothing: measures the queue's own cost per task."""
    return None


@router.handler("stamp")
def stamp(task: Task) -> dict[str, float]:
    """Report when the handler started, as wall-clock seconds."""
    return {"start": time.time()}


@router.handler("spin")
def spin_task(task: Task) -> dict[str, float]:
    """Run `spin` for the loop count in the payload; report the CPU seconds it took here."""
    t0 = time.process_time()
    spin(int(task.payload["n"]))
    return {"cpu_s": time.process_time() - t0}


@router.handler("hold")
def hold(task: Task) -> str:
    """Sleep payload['s'] seconds on the first try only: a task for a worker to be lost with."""
    if task.tries == 1:
        time.sleep(float(task.payload["s"]))
    return f"done on try {task.tries}"
