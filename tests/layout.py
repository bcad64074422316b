"""The package as it installs, laid out from the repository: for mypy and for building the wheel.

The repository keeps the design card's folders at its root and setuptools maps them into `ajq`
(pyproject's package-dir). Python finds them through the editable install's import hook, but mypy
runs no import hooks, so `python -m tests.layout mypy` checks a view of the tree in which
`ajq/broker` and the rest are symlinks to the real folders, as the wheel will have them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PARTS = ("protocol", "broker", "worker", "client")


def make_view(where: Path) -> Path:
    """A directory holding `ajq/` as installed: its own files, the parts linked in. Returns it."""
    pkg = where / "ajq"
    pkg.mkdir()
    for item in (REPO / "ajq").iterdir():
        if item.name != "__pycache__":
            (pkg / item.name).symlink_to(item)
    for part in PARTS:
        (pkg / part).symlink_to(REPO / part, target_is_directory=True)
    return where


def mypy(*extra: str) -> subprocess.CompletedProcess[str]:
    """mypy --strict (pyproject's settings) over the whole `ajq` package, in a fresh view."""
    with tempfile.TemporaryDirectory(prefix="ajq-view-") as tmp:
        view = make_view(Path(tmp))
        cmd = [
            sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
            "--cache-dir", str(REPO / ".mypy_cache"), "-p", "ajq", *extra,
        ]  # fmt: skip
        run = subprocess.run(cmd, cwd=view, capture_output=True, text=True, env=_env())
    return run


def _env() -> dict[str, str]:
    """The environment without PYTHONPATH, so mypy sees the view and not the repository."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def main() -> int:
    if sys.argv[1:] != ["mypy"]:
        print("usage: python -m tests.layout mypy", file=sys.stderr)
        return 2
    run = mypy()
    print(run.stdout, end="")
    print(run.stderr, end="", file=sys.stderr)
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
