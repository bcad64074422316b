"""Names every part agrees on when nobody gives one: the broker's endpoint and the default queue."""

from __future__ import annotations

import os

DEFAULT_ENDPOINT = "tcp://127.0.0.1:7480"  # loopback only: without CURVE keys nothing else may reach it
ENDPOINT_ENV = "AJQ_BROKER"  # the environment variable that overrides DEFAULT_ENDPOINT everywhere
DEFAULT_QUEUE = "DEFAULT"  # asyncjobs' implicit queue: where a task goes when no queue is named


def endpoint(given: str | None = None) -> str:
    """The endpoint given, else $AJQ_BROKER, else DEFAULT_ENDPOINT."""
    return given or os.environ.get(ENDPOINT_ENV, DEFAULT_ENDPOINT)
