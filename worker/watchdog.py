"""The lease bound on the child's side (SPEC 6.1): a child running a task kills itself at `kill_at`.

The supervisor writes `kill_at` (CLOCK_MONOTONIC, shared by every process of the host) into a word
of shared memory: the earlier of its last confirmed contact with the broker plus the lease bound,
and the time by which the broker's lease surely still holds. A thread of the child copies it into a
POSIX timer that sends SIGKILL, so the kill comes from the kernel: it needs neither the supervisor
(stopped, dead) nor the child's own interpreter (a handler holding the GIL in C code) to be running,
and it fires even while the child itself is stopped.

It runs on the real CLOCK_MONOTONIC, not on the clock injected into the supervisor, and stays so on
purpose: a kernel timer is what still fires when no process of ours can act. A test that moves the
supervisor's clock therefore cannot move this timer (tests/test_supervisor_clock.py keeps its moved
time far ahead of the real clock, so the timer never fires there and the supervisor's own decisions
are what it tests).
"""

from __future__ import annotations

import ctypes
import math
import signal
import threading
import time
from multiprocessing.sharedctypes import RawValue
from typing import Any

TIMER_ABSTIME = 1
REFRESH_S = 0.1  # how often the child's thread copies a later kill_at into its timer


class _SigEvent(ctypes.Structure):
    """struct sigevent, SIGEV_SIGNAL form (Linux x86-64 and arm64: 64 bytes)."""

    _fields_ = [
        ("sigev_value", ctypes.c_void_p),
        ("sigev_signo", ctypes.c_int),
        ("sigev_notify", ctypes.c_int),
        ("_pad", ctypes.c_byte * 48),
    ]


class _TimeSpec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _ITimerSpec(ctypes.Structure):
    _fields_ = [("it_interval", _TimeSpec), ("it_value", _TimeSpec)]


def shared_kill_at() -> Any:
    """A double in shared memory, made before the fork: the supervisor writes it, the child reads it."""
    return RawValue(ctypes.c_double, math.inf)


class KillTimer:
    """A POSIX timer on CLOCK_MONOTONIC that SIGKILLs this process at an absolute time."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._id = ctypes.c_void_p()
        event = _SigEvent(None, signal.SIGKILL, 0)  # SIGEV_SIGNAL = 0
        if self._libc.timer_create(time.CLOCK_MONOTONIC, ctypes.byref(event), ctypes.byref(self._id)) != 0:
            raise OSError(ctypes.get_errno(), "timer_create failed: the lease bound cannot be kept")

    def set(self, at: float) -> None:
        """Fire at monotonic time `at` (at once if it is past); inf disarms."""
        if math.isinf(at):
            value = _TimeSpec(0, 0)
        else:
            at = max(at, 1e-9)  # 0 would disarm
            value = _TimeSpec(int(at), int((at % 1) * 1e9))
        spec = _ITimerSpec(_TimeSpec(0, 0), value)
        if self._libc.timer_settime(self._id, TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
            raise OSError(ctypes.get_errno(), "timer_settime failed: the lease bound cannot be kept")


class Watchdog:
    """The child's side: armed while a task runs, it keeps the kill timer at the shared `kill_at`."""

    def __init__(self, kill_at: Any) -> None:
        self._kill_at = kill_at
        self._timer = KillTimer()
        self._lock = threading.Lock()
        self._armed = False
        self._set_to = math.inf
        threading.Thread(target=self._refresh_forever, name="ajq-watchdog", daemon=True).start()

    def arm(self) -> bool:
        """A task starts: False (and nothing armed) if its kill time has passed already."""
        with self._lock:
            at = float(self._kill_at.value)
            if at <= time.monotonic():
                return False
            self._armed = True
            self._set(at)
            return True

    def disarm(self) -> None:
        """The task is over. The timer itself is cleared by the thread within REFRESH_S (or moved by
        the next arm): one system call per task instead of two, on the path of every task."""
        with self._lock:
            self._armed = False

    def _set(self, at: float) -> None:
        if at != self._set_to:
            self._timer.set(at)
            self._set_to = at

    def _refresh_forever(self) -> None:
        """Copy kill_at into the timer while armed (it moves later as contact is confirmed); clear it
        while idle. It only polls (10 a second): waking it for each task would cost every task a
        thread switch."""
        while True:
            time.sleep(REFRESH_S)
            with self._lock:
                self._set(float(self._kill_at.value) if self._armed else math.inf)
