"""Fixtures that start and stop real ajq processes (see harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import BrokerHandle, Proc, start_broker


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", type=float, default=60.0, help="seconds the fault suite's nemesis runs (default 60)")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerHandle]:
    handle = start_broker(tmp_path)
    try:
        yield handle
    finally:
        handle.close()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Processes a test starts itself; all are stopped at teardown."""
    started: list[Proc] = []
    try:
        yield started
    finally:
        for p in started:
            p.kill()
