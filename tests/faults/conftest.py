"""The fault suite's figures: each test's line is collected and printed in pytest's summary."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

from tests.faults.ledger import FIGURES_ENV, Figures

_OWN = pytest.StashKey[Path]()  # a figures file this session made (deleted at its end)


def pytest_configure(config: pytest.Config) -> None:
    if not os.environ.get(FIGURES_ENV):
        path = Path(tempfile.gettempdir()) / f"ajq-figures-{os.getpid()}.jsonl"
        path.unlink(missing_ok=True)
        os.environ[FIGURES_ENV] = str(path)  # the tests run in this process: they append here
        config.stash[_OWN] = path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    path = Path(os.environ.get(FIGURES_ENV, ""))
    if not path.is_file():
        return
    terminalreporter.section("fault figures")
    for line in path.read_text().splitlines():
        terminalreporter.write_line(Figures(**json.loads(line)).line())


def pytest_unconfigure(config: pytest.Config) -> None:
    own = config.stash.get(_OWN, None)
    if own is not None:
        own.unlink(missing_ok=True)
        os.environ.pop(FIGURES_ENV, None)


@pytest.fixture
def soak_s(request: pytest.FixtureRequest) -> float:
    return float(request.config.getoption("--soak"))
