"""The broker's exception tree: errors for whoever runs `ajbroker`, each saying what to change."""

from __future__ import annotations


class AjbrokerError(Exception):
    """Root of every error the broker raises on purpose: the operator of `ajbroker` must act."""


class BrokerConfigError(AjbrokerError):
    """A setting is invalid; the message names the setting and what it accepts."""


class DispatchFailed(AjbrokerError):
    """Handing out one queue's tasks failed (a bug, or a row the broker cannot read): that queue
    waits a moment and the others go on."""

    def __init__(self, queue: str) -> None:
        super().__init__(f"dispatch of queue {queue!r} failed")
        self.queue = queue


class DuplicateTaskId(AjbrokerError):
    """An insert named a task id that exists already: the request is refused (DUPLICATE), not the broker."""


class StoreError(AjbrokerError):
    """The database cannot be opened or written (disk full, permissions, a corrupt file)."""
