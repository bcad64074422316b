"""The injected clock: loops take a `Now` so tests can move time instead of sleeping."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Now:
    """Monotonic time for leases and timers within one run; wall time for what is stored or shown."""

    mono: float
    wall: float


class Clock(Protocol):
    def now(self) -> Now: ...


class SystemClock:
    def now(self) -> Now:
        return Now(time.monotonic(), time.time())
