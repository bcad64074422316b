"""The worker's exceptions: failures that need a fix, and TerminateTask, a signal from handlers.

The failures of a try that no handler raised (no handler, a bad result, a dead or timed-out process)
are WorkerErrors too, so the router's error handler always receives an exception that says why.
"""

from __future__ import annotations


class WorkerError(Exception):
    """Root of every error the worker raises on purpose."""


class WorkerConfigError(WorkerError):
    """A setting or the app spec is invalid; the message says what is accepted."""


class BrokerRefused(WorkerError):
    """The broker refused this worker's HELLO (too many queues, a bad setting): it cannot register."""


class NoHandler(WorkerError):
    """No registered pattern matches the task's type (a failed try)."""


class BadResult(WorkerError):
    """The handler returned a value that cannot be stored: not msgpack, or over the size limit."""


class ChildDied(WorkerError):
    """The process running the task ended before it reported (a signal, os._exit, out of memory)."""


class HardTimeout(WorkerError):
    """The handler ran past its lease (max_run_time, or its last task.extend) and its process was killed."""


class LeaseRanOut(WorkerError):
    """The task waited in the worker's buffer until its lease ended, so it never started."""


class TerminateTask(Exception):
    """Raise from a handler to end the task now, as `terminated`, with no more tries.

    For input that can never succeed (a malformed payload). Not a WorkerError: it is control flow.
    """
