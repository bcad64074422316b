"""The broker's exception tree: each error says what the operator should do."""

from __future__ import annotations


class BrokerError(Exception):
    """Root of every error the broker raises on purpose."""


class ConfigError(BrokerError):
    """A setting is invalid; the message names the setting and what it accepts."""


class StoreError(BrokerError):
    """The database cannot be opened or written (disk full, permissions, a corrupt file)."""
