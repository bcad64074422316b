"""The code stays ruff- and mypy-clean, and the parts never import each other."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests import layout
from tests.harness import REPO


@pytest.mark.timeout(180)
def test_ruff_is_clean() -> None:
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.timeout(300)
def test_mypy_is_clean() -> None:
    run = layout.mypy()
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("part", ["protocol", "broker", "worker", "client"])
def test_parts_share_only_protocol(part: str) -> None:
    others = {"broker", "worker", "client"} - {part}
    pattern = re.compile(rf"^\s*(from|import)\s+({'|'.join(others)})(\.|\s|$)", re.MULTILINE)
    offenders = [str(p) for p in (REPO / part).rglob("*.py") if pattern.search(p.read_text())]
    assert not offenders, f"{part}/ imports another part: {offenders}"
