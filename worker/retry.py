"""Retry policies: how long a failed task waits before its next try.

asyncjobs' linear policies (20 steps, delay = interval * jitter + random(0, interval)) and
asynq's Sidekiq formula (n**4 + 15 + random(0, 30) * (n + 1) seconds). Any object with a
`delay(n) -> seconds` method works too; `n` is the number of tries used so far.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ajq.protocol import options
from ajq.worker.errors import WorkerConfigError


class RetryPolicyProvider(Protocol):
    def delay(self, n: int) -> float: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Intervals in seconds, indexed by the try number (the last one repeats), with jitter."""

    intervals: Sequence[float]
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if not self.intervals:
            raise WorkerConfigError("RetryPolicy(intervals=[]): give at least one interval, e.g. [1, 10, 60]")
        for i, interval in enumerate(self.intervals):
            if problem := options.seconds_problem(interval, zero_ok=True):
                raise WorkerConfigError(options.refusal(f"intervals[{i}]", interval, problem, "60"))
        if problem := options.seconds_problem(self.jitter, zero_ok=True) and "a finite number, 0 or more":
            raise WorkerConfigError(options.refusal("jitter", self.jitter, problem, "0.5"))
        object.__setattr__(self, "intervals", tuple(float(i) for i in self.intervals))  # frozen: set once, here

    def delay(self, n: int) -> float:
        interval = self.intervals[min(max(n, 0), len(self.intervals) - 1)]
        if interval == 0:
            return 0.0
        delay = round(interval * self.jitter + random.uniform(0, interval), 3)
        return delay or self.intervals[0]


def linear(steps: int, jitter: float, low_s: float, high_s: float) -> RetryPolicy:
    """`steps` intervals from `low_s` rising evenly toward `high_s`."""
    low_s, high_s = min(low_s, high_s), max(low_s, high_s)
    step = (high_s - low_s) / steps
    return RetryPolicy([low_s + i * step for i in range(steps)], jitter)


RETRY_LINEAR_ONE_MINUTE = linear(20, 0.5, 1.0, 60.0)
RETRY_LINEAR_TEN_MINUTES = linear(20, 0.9, 60.0, 600.0)
RETRY_LINEAR_ONE_HOUR = linear(20, 0.9, 600.0, 3600.0)
RETRY_DEFAULT = RETRY_LINEAR_TEN_MINUTES


@dataclass(frozen=True)
class SidekiqPolicy:
    """asynq's default backoff, from Sidekiq: n**4 + 15 + random(0..29) * (n + 1) seconds."""

    def delay(self, n: int) -> float:
        return float(n**4 + 15 + random.randrange(30) * (n + 1))


RETRY_SIDEKIQ = SidekiqPolicy()

BY_NAME: dict[str, RetryPolicyProvider] = {
    "1m": RETRY_LINEAR_ONE_MINUTE,
    "10m": RETRY_LINEAR_TEN_MINUTES,
    "1h": RETRY_LINEAR_ONE_HOUR,
    "sidekiq": RETRY_SIDEKIQ,
}


def by_name(name: str) -> RetryPolicyProvider:
    try:
        return BY_NAME[name]
    except KeyError:
        raise WorkerConfigError(f"unknown retry policy {name!r}: use one of {', '.join(BY_NAME)}") from None
