"""The injected clock: loops take a `Now` so tests can move time instead of sleeping."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("ajq")

STEP_S = 1.0  # a wall clock that moves this much more (or less) than the monotonic clock has stepped
SLEW = 0.5  # how fast steady wall time runs, against the monotonic clock, while it is ahead


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


class SteadyClock:
    """Wall time that never goes back: the broker's, so a wall clock stepped back an hour neither
    fires an hour of schedules again nor leaves tasks due an hour late.

    It follows `source`'s wall time, except that it never runs backwards: while `source` is behind
    (it was stepped back), it runs on at half the monotonic rate until `source` catches up (a step
    of an hour back is absorbed in two hours; delays meanwhile last up to twice as long). A step
    forward is taken at once, as a stored `run_at` means that wall time. Leases and timers use the
    monotonic clock and are not moved by either."""

    def __init__(self, source: Clock | None = None) -> None:
        self.source = source or SystemClock()
        self._last: Now | None = None
        self._behind = False

    def now(self) -> Now:
        raw = self.source.now()
        last = self._last
        if last is None:
            self._last = raw
            return raw
        floor = last.wall + SLEW * max(0.0, raw.mono - last.mono)
        expected = last.wall + (raw.mono - last.mono)
        if raw.wall - expected > STEP_S:
            log.warning("the wall clock stepped forward by %.1fs: schedules due since fire once", raw.wall - expected)
        behind = raw.wall < floor
        if behind and not self._behind:
            log.warning(
                "the wall clock stepped back by %.1fs: ajq's wall time runs on at half speed until it catches up",
                expected - raw.wall,
            )
        self._behind = behind
        self._last = Now(raw.mono, max(raw.wall, floor))
        return self._last
