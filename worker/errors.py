"""The worker's exceptions: failures that need a fix, and TerminateTask, a signal from handlers."""

from __future__ import annotations


class WorkerError(Exception):
    """Root of every error the worker raises on purpose."""


class ConfigError(WorkerError):
    """A setting or the app spec is invalid; the message says what is accepted."""


class TerminateTask(Exception):
    """Raise from a handler to end the task now, as `terminated`, with no more tries.

    For input that can never succeed (a malformed payload). Not a WorkerError: it is control flow.
    """
