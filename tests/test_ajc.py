"""`ajc` against a real broker process: queues, tasks, crons, workers, info, top and watch, and the
error paths (one `ajc: ...` line, a non-zero exit, no traceback)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ajq import Client, ClientError
from ajq.client.cli import format_duration, main, parse_duration
from ajq.client.cli_live import Tally, events_endpoint
from ajq.client.cli_views import parse_deadline, parse_time
from ajq.protocol import TaskState

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
    events = f"tcp://127.0.0.1:{free_port()}"
    cmd = [sys.executable, "-m", "ajq.broker", "--bind", endpoint, "--events", events, "--db", str(tmp / "ajq.db")]
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
    cmd = [sys.executable, "-m", "ajq.client.cli", *args]
    return subprocess.run(cmd, cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)


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
    assert isinstance(viewed, dict) and viewed["created_at"]
    assert viewed == {
        "name": "mail",
        "max_concurrent": 3,
        "max_run_time_s": 3600.0,
        "max_tries": -1,
        "paused": False,
        "workers": 0,
        **{k: viewed[k] for k in ("retention_s", "dead_max", "dead_retention_s", "created_at")},  # the defaults
        "backoff_s": 1.0,
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


def test_parse_time_and_deadline() -> None:
    # Given ISO times with and without an offset, then both are UTC-aware; a duration counts from now
    assert parse_time("2030-01-31T09:00:00Z") == parse_time("2030-01-31 09:00")
    assert parse_time("2030-01-31T10:00:00+01:00").timestamp() == parse_time("2030-01-31T09:00:00").timestamp()
    ahead = parse_deadline("10m").timestamp() - time.time()
    assert 590 < ahead <= 600
    assert parse_deadline("2030-01-31T09:00:00Z") == parse_time("2030-01-31T09:00:00Z")


def test_events_endpoint_replaces_wildcards() -> None:
    # Given a broker that binds its events on every interface, then we connect to the host we reach it on
    assert events_endpoint("tcp://*:7481", "tcp://queue.example:7480") == "tcp://queue.example:7481"
    assert events_endpoint("tcp://0.0.0.0:9", "tcp://10.0.0.2:7480") == "tcp://10.0.0.2:9"
    assert events_endpoint("tcp://*:7481", "tcp://*:7480") == "tcp://127.0.0.1:7481"
    assert events_endpoint("tcp://10.1.1.1:7481", "tcp://x:1") == "tcp://10.1.1.1:7481"
    assert events_endpoint("ipc:///tmp/ev", "tcp://x:1") == "ipc:///tmp/ev"


def test_tally_counts_done_and_failed() -> None:
    # Given events of one refresh, then complete counts as done and retry/dead/terminated/... as failed
    tally = Tally(started=time.monotonic() - 2.0)
    for state in ["complete", "complete", "retry", "dead", "active", "new", "expired"]:
        tally.add({"queue": "q", "state": state})
    rates = tally.rates()
    assert rates.done["q"] == pytest.approx(1.0, rel=0.05)
    assert rates.failed["q"] == pytest.approx(1.5, rel=0.05)


def test_queue_configure_retention(broker: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Given retention options, when a queue is configured, then they are stored in seconds
    info = run_json(
        capsys, "--broker", broker, "queue", "configure", "kept", "--retention", "2h", "--dead-max", "5",
        "--dead-retention", "7d",
    )  # fmt: skip
    assert isinstance(info, dict)
    assert (info["retention_s"], info["dead_max"], info["dead_retention_s"]) == (7200.0, 5, 7 * 86400.0)


def test_queue_pause_resume(broker: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a queue, when paused, then view shows it paused; when resumed, not
    run_json(capsys, "--broker", broker, "queue", "configure", "pausable")
    paused = run_json(capsys, "--broker", broker, "queue", "pause", "pausable")
    assert isinstance(paused, dict) and paused["paused"] is True
    viewed = run_json(capsys, "--broker", broker, "queue", "view", "pausable")
    assert isinstance(viewed, dict) and viewed["paused"] is True
    resumed = run_json(capsys, "--broker", broker, "queue", "resume", "pausable")
    assert isinstance(resumed, dict) and resumed["paused"] is False


def test_queue_purge(broker: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Given 3 waiting tasks, when purge runs without --yes and without a terminal, then it refuses
    with Client(broker, timeout=5) as c:
        for _ in range(3):
            c.submit("junk", queue="purgeq")
    refused = ajc("--broker", broker, "queue", "purge", "purgeq")
    assert refused.returncode == 2
    assert_one_error_line(refused)
    assert "--yes" in refused.stderr
    # When purge --yes runs, then it reports 3 and the queue has no tasks left
    assert run_json(capsys, "--broker", broker, "queue", "purge", "purgeq", "--yes") == {"queue": "purgeq", "purged": 3}
    assert run_json(capsys, "--broker", broker, "task", "ls", "--queue", "purgeq") == []


def test_queue_rm(broker: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Given an idle queue with a task, when rm runs without --yes and no terminal, then it refuses
    with Client(broker, timeout=5) as c:
        task_id = c.submit("junk", queue="doomed").id
    refused = ajc("--broker", broker, "queue", "rm", "doomed")
    assert refused.returncode == 2
    assert_one_error_line(refused)
    # When rm --yes runs, then the queue and its task are gone: view exits 1 with one line
    assert run_json(capsys, "--broker", broker, "queue", "rm", "doomed", "--yes") == {"deleted": "doomed"}
    gone = ajc("--broker", broker, "queue", "view", "doomed")
    assert gone.returncode == 1
    assert_one_error_line(gone)
    assert ajc("--broker", broker, "task", "view", task_id).returncode == 1


def test_task_ls_filters_and_pages(broker: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a task of another type, then 5 tasks, in a fresh queue
    with Client(broker, timeout=5) as c:
        c.submit("other", queue="paged", task_id="pg-other")
        for i in range(5):
            c.submit("pg", {"i": i}, queue="paged", task_id=f"pg-{i}")
    # When listed with --limit 2, then the newest 2 come first and a --before hint names the next page
    result = ajc("--broker", broker, "task", "ls", "--queue", "paged", "--type", "pg", "--limit", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.index("pg-4") < result.stdout.index("pg-3") and "pg-2" not in result.stdout
    hint = re.search(r"--before (\d+)", result.stdout)
    assert hint is not None, result.stdout
    # And the next page holds the next 2, and the last page the last one, with no hint
    base = ["--broker", broker, "task", "ls", "--queue", "paged", "--type", "pg", "--limit", "2"]
    page2 = run_json(capsys, *base, "--before", hint.group(1))
    assert isinstance(page2, list)
    assert [t["id"] for t in page2] == ["pg-2", "pg-1"]
    page3 = ajc(*base, "--before", str(page2[-1]["seq"]))
    assert "pg-0" in page3.stdout and "--before" not in page3.stdout
    # And the filters: by type, by state
    others = run_json(capsys, "--broker", broker, "task", "ls", "--queue", "paged", "--type", "other")
    assert isinstance(others, list) and [t["id"] for t in others] == ["pg-other"]
    assert run_json(capsys, "--broker", broker, "task", "ls", "--queue", "paged", "--state", "dead") == []
    new = run_json(capsys, "--broker", broker, "task", "ls", "--queue", "paged", "--state", "new", "--limit", "50")
    assert isinstance(new, list) and len(new) == 6


def test_task_cancel_retry_rm(broker: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a waiting task, when cancelled, then it is terminated
    run_json(capsys, "--broker", broker, "task", "add", "slow", "--queue", "cancels", "--id", "c-1")
    cancelled = run_json(capsys, "--broker", broker, "task", "cancel", "c-1")
    assert isinstance(cancelled, dict) and cancelled["state"] == "terminated"
    # When retried, then it is new again
    retried = run_json(capsys, "--broker", broker, "task", "retry", "c-1")
    assert isinstance(retried, dict) and retried["state"] == "new"
    # When deleted, then view exits 1 with one line
    assert run_json(capsys, "--broker", broker, "task", "rm", "c-1") == {"deleted": "c-1"}
    gone = ajc("--broker", broker, "task", "view", "c-1")
    assert gone.returncode == 1
    assert_one_error_line(gone)


def test_task_retry_of_waiting_task_fails(broker: str) -> None:
    # Given a task that has not ended, when retried, then exit 1 with one line
    with Client(broker, timeout=5) as c:
        task_id = c.submit("x", queue="noretry").id
    result = ajc("--broker", broker, "task", "retry", task_id)
    assert result.returncode == 1
    assert_one_error_line(result)


def test_task_add_options(broker: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Given --delay 1h, then the task is scheduled about an hour from now
    run_json(capsys, "--broker", broker, "task", "add", "later", "--queue", "opts", "--id", "o-1", "--delay", "1h")
    later = run_json(capsys, "--broker", broker, "task", "view", "o-1")
    assert isinstance(later, dict) and later["state"] == "scheduled"
    # Given --run-at, --deadline and --unique-for, then it is accepted and scheduled
    run_json(
        capsys, "--broker", broker, "task", "add", "at", "--queue", "opts", "--id", "o-2",
        "--run-at", "2099-01-01T00:00:00Z", "--deadline", "2099-01-02T00:00:00Z", "--unique-for", "1m",
    )  # fmt: skip
    at = run_json(capsys, "--broker", broker, "task", "view", "o-2")
    assert isinstance(at, dict)
    assert (at["state"], at["run_at"]) == ("scheduled", "2099-01-01T00:00:00+00:00")
    assert at["deadline"] == "2099-01-02T00:00:00+00:00"
    # Given --depends-on a waiting task with --load-results, then it is blocked on it
    run_json(
        capsys, "--broker", broker, "task", "add", "child", "--queue", "opts", "--id", "o-3",
        "--depends-on", "o-1", "--depends-on", "o-2", "--load-results",
    )  # fmt: skip
    child = run_json(capsys, "--broker", broker, "task", "view", "o-3")
    assert isinstance(child, dict)
    assert (child["state"], sorted(child["depends_on"])) == ("blocked", ["o-1", "o-2"])


def test_task_add_bad_options() -> None:
    # Given --delay with --run-at, or --load-results alone, or a bad time, then a usage error, no traceback
    for args in (
        ["--delay", "1h", "--run-at", "2099-01-01"],
        ["--load-results"],
        ["--run-at", "tomorrow"],
        ["--deadline", "soon"],
    ):
        result = ajc("task", "add", "t", *args)
        assert result.returncode == 2, args
        assert "Traceback" not in result.stderr


def test_cron_round_trip(broker: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a cron added with a payload, then ls and view show it
    added = run_json(capsys, "--broker", broker, "cron", "add", "nightly", "0 3 * * *", "report", '{"k": 1}')
    assert isinstance(added, dict)
    assert (added["cron"], added["type"], added["payload"], added["queue"]) == (
        "0 3 * * *",
        "report",
        {"k": 1},
        "DEFAULT",
    )
    assert added["next_run"]
    listed = run_json(capsys, "--broker", broker, "cron", "ls")
    assert isinstance(listed, list) and "nightly" in [x["name"] for x in listed]
    assert run_json(capsys, "--broker", broker, "cron", "view", "nightly") == added
    table = ajc("--broker", broker, "cron", "ls")
    assert "nightly" in table.stdout and "0 3 * * *" in table.stdout
    # When removed, then view exits 1
    assert run_json(capsys, "--broker", broker, "cron", "rm", "nightly") == {"deleted": "nightly"}
    gone = ajc("--broker", broker, "cron", "view", "nightly")
    assert gone.returncode == 1
    assert_one_error_line(gone)


def test_cron_invalid_expression(broker: str) -> None:
    # Given an expression that is not cron, when added, then exit 1 with one line
    result = ajc("--broker", broker, "cron", "add", "bad", "every tuesday", "t")
    assert result.returncode == 1
    assert_one_error_line(result)


def test_workers_and_info(broker: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a broker without workers, then workers --json is a list and info --json names the events endpoint
    assert isinstance(run_json(capsys, "--broker", broker, "workers"), list)
    info = run_json(capsys, "--broker", broker, "info")
    assert isinstance(info, dict) and info["events"].startswith("tcp://")
    table = ajc("--broker", broker, "info")
    assert table.returncode == 0 and "events" in table.stdout and "uptime_s" in table.stdout


def test_top_once(broker: str) -> None:
    # Given two queues, when `top --once` runs, then its one frame names both and the workers table
    with Client(broker, timeout=5) as c:
        c.configure_queue("top-a")
        c.submit("t", queue="top-b")
    result = ajc("--broker", broker, "top", "--once")
    assert result.returncode == 0, result.stderr
    assert "top-a" in result.stdout and "top-b" in result.stdout and "workers" in result.stdout


def test_task_watch_prints_events(broker: str) -> None:
    # Given `task watch` for a fresh queue, started first
    cmd = [
        sys.executable, "-m", "ajq.client.cli", "--broker", broker, "task", "watch", "--queue", "watched", "--json",
        "--count", "2", "--timeout", "10",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    submitted: list[str] = []
    deadline = time.monotonic() + 15
    # When tasks are submitted until it has seen 2 (its subscription takes a moment to reach the broker)
    with Client(broker, timeout=5) as c:
        while time.monotonic() < deadline:
            submitted.append(c.submit("w", {"n": len(submitted)}, queue="watched").id)
            c.submit("w", queue="not-watched")
            try:
                proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                continue
    out, err = proc.communicate(timeout=5)
    # Then it exits 0 having printed 2 JSON lines: the 'new' events of tasks it was asked to watch
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert len(events) == 2
    for event in events:
        assert (event["queue"], event["state"], event["type"], event["tries"]) == ("watched", "new", "w", 0)
        assert event["id"] in submitted and isinstance(event["time"], float)


def test_task_watch_timeout_without_events(broker: str) -> None:
    # Given no events, when watch waits 0.5 s for one, then exit 1 with one line; without --count, exit 0
    short = ajc("--broker", broker, "task", "watch", "--id", "none", "--count", "1", "--timeout", "0.5")
    assert short.returncode == 1
    assert_one_error_line(short)
    quiet = ajc("--broker", broker, "task", "watch", "--id", "none", "--timeout", "0.5")
    assert (quiet.returncode, quiet.stdout) == (0, "")
