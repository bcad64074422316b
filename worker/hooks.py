"""User hooks the supervisor must call (the error handler for a try its child could not report) run
on one thread of their own, so a slow or stuck hook never stops the loop: its heartbeats, the
lease bound, the other tasks. Calls wait in a bounded queue; past it they are dropped and counted.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from ajq.protocol.clock import Clock

log = logging.getLogger("ajq.worker")

MAX_WAITING = 1000  # hook calls queued behind a slow one; more are dropped (and logged)
SLOW_S = 10.0  # a hook running longer than this is logged as stuck (a thread cannot be stopped)


class HookRunner:
    """One daemon thread, started on the first call, that runs hook calls in order. It reads `clock`
    (the supervisor's) when a call starts, so `check` compares times of one clock."""

    def __init__(self, clock: Clock, max_waiting: int = MAX_WAITING) -> None:
        self.clock = clock
        self._calls: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]]] = queue.Queue(max_waiting)
        self._thread: threading.Thread | None = None
        self._running_since: float | None = None  # monotonic, while a call runs
        self._warned_for: float | None = None
        self.dropped = 0

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue `fn(*args)` without waiting; dropped (logged) when MAX_WAITING calls wait already."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="ajq-hooks", daemon=True)
            self._thread.start()
        try:
            self._calls.put_nowait((fn, args))
        except queue.Full:
            self.dropped += 1
            n = self.dropped
            log.error("%d hook calls wait behind a slow one: this one is dropped (%d so far)", MAX_WAITING, n)

    def check(self, now: float) -> None:
        """From the loop: say once per stuck call that the hook thread is stuck."""
        since = self._running_since
        if since is not None and now - since > SLOW_S and self._warned_for != since:
            self._warned_for = since
            log.warning("a hook has run for %.0fs: later hook calls wait (%d queued)", now - since, self._calls.qsize())

    def idle(self) -> bool:
        """Nothing queued or running (at shutdown, the worker waits a little for this)."""
        return self._calls.unfinished_tasks == 0

    def _serve(self) -> None:
        while True:
            fn, args = self._calls.get()
            self._running_since = self.clock.now().mono
            try:
                fn(*args)
            except BaseException:  # a hook must never end the thread
                log.exception("a hook raised (ignored)")
            finally:
                self._running_since = None
                self._calls.task_done()
