"""`ajc` against a real broker process: queue ls/view/configure, task add/view, and the error paths."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from client import Client, ClientError
from client.cli import format_duration, main, parse_duration
from protocol import TaskState

REPO = Path(__file__).resolve().parent.parent
START_DEADLINE_S = 10.0


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def wait_ready(proc: subprocess.Popen[bytes], endpoint: str, log: Path) -> None:
    """Poll the broker with short requests until it answers; fail with its log if it never does."""
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"broker exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with Client(endpoint, timeout=0.5) as c:
                c.queues()
            return
        except ClientError:
            continue
    pytest.fail(f"broker did not answer within {START_DEADLINE_S}s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ajbroker on a free port with its own database; yields its endpoint."""
    tmp = tmp_path_factory.mktemp("ajc")
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    log = tmp / "broker.log"
    cmd = [sys.executable, "-m", "broker", "--bind", endpoint, "--db", str(tmp / "ajq.db")]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_ready(proc, endpoint, log)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def ajc(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI as its own process, the way a user does."""
    cmd = [sys.executable, "-m", "client.cli", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=30)


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> object:
    """Run main() in-process with --json and parse stdout."""
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def assert_one_error_line(result: subprocess.CompletedProcess[str]) -> None:
    """A failed command says one `ajc: ...` line on stderr and shows no traceback."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ajc: ")
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("1h", 3600.0), ("1h30m", 5400.0), ("2d", 172800.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("seconds", "text"), [(3600.0, "1h"), (90.0, "1m30s"), (45.0, "45s"), (93784.0, "1d2h3m4s")])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_queue_configure_then_view(broker: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a broker, when a queue is configured with a run time of 1h and unlimited tries
    configured = run_json(
        capsys, "--broker", broker, "queue", "configure", "mail", "--run-time", "1h", "--tries", "unlimited",
        "--concurrent", "3",
    )  # fmt: skip
    # Then view --json shows those values, and the table shows them in human form
    viewed = run_json(capsys, "--broker", broker, "queue", "view", "mail")
    assert configured == viewed
    assert viewed == {
        "name": "mail",
        "max_concurrent": 3,
        "max_run_time_s": 3600.0,
        "max_tries": -1,
        "paused": False,
        "workers": 0,
        "counts": dict.fromkeys([s.value for s in TaskState], 0),
    }
    assert main(["--broker", broker, "queue", "view", "mail"]) == 0
    table = capsys.readouterr().out
    assert "1h" in table and "unlimited" in table


def test_configure_tries_minus_one(broker: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a queue with 5 tries, when configured with `--tries -1`, then its tries are unlimited
    run_json(capsys, "--broker", broker, "queue", "configure", "neg", "--tries", "5")
    info = run_json(capsys, "--broker", broker, "queue", "configure", "neg", "--tries", "-1", "--run-time", "90")
    assert isinstance(info, dict)
    assert (info["max_tries"], info["max_run_time_s"]) == (-1, 90.0)


def test_queue_ls_json_lists_default(broker: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a fresh broker, when `queue ls --json` runs, then its stdout is JSON that lists DEFAULT
    queues = run_json(capsys, "--broker", broker, "queue", "ls")
    assert isinstance(queues, list)
    assert "DEFAULT" in [q["name"] for q in queues]


def test_queue_ls_table(broker: str) -> None:
    # Given a fresh broker, when `queue ls` runs as a process, then the table names DEFAULT
    result = ajc("--broker", broker, "queue", "ls")
    assert result.returncode == 0, result.stderr
    assert "DEFAULT" in result.stdout


def test_task_add_then_view(broker: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a task added with a JSON payload
    payload = {"to": "a@example.com", "n": [1, 2], "markup": "[bold]x"}
    added = run_json(capsys, "--broker", broker, "task", "add", "send", json.dumps(payload), "--id", "t-1")
    assert added == {"id": "t-1", "type": "send", "queue": "DEFAULT"}
    # When it is viewed as JSON, then it is new, with the payload as given
    task = run_json(capsys, "--broker", broker, "task", "view", "t-1")
    assert isinstance(task, dict)
    assert (task["state"], task["payload"], task["type"], task["tries"]) == ("new", payload, "send", 0)
    assert task["created_at"] and task["result"] is None
    # And the table shows the payload as JSON text
    assert main(["--broker", broker, "task", "view", "t-1"]) == 0
    assert '"[bold]x"' in capsys.readouterr().out


def test_task_add_prints_id(broker: str) -> None:
    # Given no payload, when `task add` runs, then stdout is the new id alone and the task is null
    result = ajc("--broker", broker, "task", "add", "ping", "--queue", "pings")
    assert result.returncode == 0, result.stderr
    task_id = result.stdout.strip()
    with Client(broker, timeout=5) as c:
        info = c.get(task_id)
    assert (info.queue, info.payload) == ("pings", None)


def test_task_view_unknown_id(broker: str) -> None:
    # Given no task "nope", when it is viewed, then exit 1 with one stderr line and no traceback
    result = ajc("--broker", broker, "task", "view", "nope")
    assert result.returncode == 1
    assert_one_error_line(result)
    assert "nope" in result.stderr


def test_no_broker_times_out() -> None:
    # Given nothing listening on a port, when `queue ls` runs with a short timeout, then exit 1, one line
    result = ajc("--broker", f"tcp://127.0.0.1:{free_port()}", "--timeout", "0.5", "queue", "ls")
    assert result.returncode == 1
    assert_one_error_line(result)
    assert result.stdout == ""


def test_invalid_json_payload(broker: str) -> None:
    # Given a payload that is not JSON, when `task add` runs, then it fails with one line naming JSON
    result = ajc("--broker", broker, "task", "add", "send", "{not json")
    assert result.returncode != 0
    assert_one_error_line(result)
    assert "JSON" in result.stderr


def test_bad_duration_is_a_usage_error() -> None:
    # Given a run time argparse cannot read, when configure runs, then argparse exits 2
    result = ajc("queue", "configure", "q", "--run-time", "5x")
    assert result.returncode == 2
    assert "invalid duration" in result.stderr and "Traceback" not in result.stderr
