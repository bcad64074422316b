"""Signals and the shutdown they start (SPEC 9): SIGTSTP pauses, SIGTERM/SIGINT pause and stop.

A handler only records its signal and writes a byte to wake the loop; the loop takes the signals
here at its own `now` and learns the mode they leave. Stopping, running tasks get
`shutdown_timeout_s` from the moment the loop took the signal, on the loop's clock (a second signal
ends the wait at once); then the supervisor kills them and hands them back, using no try.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
from enum import Enum

log = logging.getLogger("ajq.worker")


class Mode(Enum):
    """What the supervisor does with new tasks."""

    RUNNING = "running"
    PAUSED = "paused"  # SIGTSTP: no new tasks; running ones finish
    STOPPING = "stopping"  # SIGTERM/SIGINT: finish or hand back, then leave


class Shutdown:
    """The signals recorded since the loop last looked, the mode, and when running tasks are given up."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.mode = Mode.RUNNING
        self.stop_at: float | None = None  # monotonic, while stopping: running tasks are killed then
        self._signals: list[int] = []
        self._wake_r, self._wake_w = socket.socketpair()
        for s in (self._wake_r, self._wake_w):
            s.setblocking(False)

    @property
    def running(self) -> bool:
        """Taking new tasks: no signal came."""
        return self.mode is Mode.RUNNING

    @property
    def stopping(self) -> bool:
        """SIGTERM or SIGINT came: finish or hand back, then leave."""
        return self.mode is Mode.STOPPING

    @property
    def fd(self) -> int:
        """Readable when a signal came: the loop polls it with the rest."""
        return self._wake_r.fileno()

    def install(self) -> None:
        """SIGTERM/SIGINT stop, SIGTSTP pauses; the handler only records the signal and wakes the loop."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGTSTP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        """Record the signal and wake the loop; nothing else happens in a handler."""
        self._signals.append(signum)
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def take(self, now: float) -> bool:
        """Act on the signals recorded since the last call, at `now`. True if one paused the worker:
        no new tasks, so the buffer goes back (and the broker is told, when it leaves RUNNING)."""
        try:
            while self._wake_r.recv(64):
                pass
        except BlockingIOError:
            pass
        paused = False
        while self._signals:
            sig = self._signals.pop(0)
            if sig != signal.SIGTSTP and self.mode is Mode.STOPPING:
                self.stop_at = now  # a second signal: stop waiting
                continue
            paused = True
            if sig == signal.SIGTSTP:
                self._pause("SIGTSTP: no new tasks")
            else:
                self._pause(f"{signal.Signals(sig).name}: shutting down")
                self.mode = Mode.STOPPING
                self.stop_at = now + self.timeout_s
        return paused

    def close(self) -> None:
        """Close the wake-up socket pair (a signal after this wakes nothing)."""
        self._wake_r.close()
        self._wake_w.close()

    def overdue(self, now: float) -> bool:
        """Stopping, and the running tasks' time is up."""
        return self.stop_at is not None and now >= self.stop_at

    def _pause(self, why: str) -> None:
        log.info("%s; running tasks finish", why)
        if self.mode is Mode.RUNNING:
            self.mode = Mode.PAUSED
