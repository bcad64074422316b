"""Fixtures that start and stop real ajq processes (see harness.py)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ajq.client.cli import main as ajc
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
def keys(tmp_path: Path) -> Path:
    """broker, app (client), worker and ops (admin) key pairs, and the broker's authorized DIR."""
    out = tmp_path / "keys"
    for name in ("broker", "app", "other", "worker", "ops", "stranger"):
        assert ajc(["keygen", name, "--dir", str(out)]) == 0
    for name, role in (("app", "clients"), ("other", "clients"), ("worker", "workers"), ("ops", "admin")):
        (out / "authorized" / role).mkdir(parents=True, exist_ok=True)
        shutil.copy(out / f"{name}.key", out / "authorized" / role)
    return out


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Processes a test starts itself; all are stopped at teardown."""
    started: list[Proc] = []
    try:
        yield started
    finally:
        for p in started:
            p.kill()
