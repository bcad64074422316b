"""Options refuse nonsense with one clear line, and take what a Python user expects to pass.

Every command (ajbroker, ajworker, ajc), every config dataclass and the client API refuse NaN,
infinity and negative or zero values where they make no sense, naming the option with an
example, and nothing starts half-configured. The client takes depends_on and times in the forms
Python users write.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ajq import AsyncClient, Client, InvalidArgument, RetryPolicy, WorkerConfigError
from ajq.broker.config import BrokerConfig
from ajq.broker.errors import BrokerConfigError
from ajq.worker.config import WorkerConfig
from tests.harness import REPO, BrokerHandle, Proc, free_port, start_worker, wait_for

NAN, INF = math.nan, math.inf


def run_cli(module: str, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", module, *args]
    return subprocess.run(cmd, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)


def assert_refused(run: subprocess.CompletedProcess[str], prog: str, option: str) -> None:
    """Exit 2 and one stderr line that names the option and gives an example."""
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2, run.stderr
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(f"{prog}: argument {option}: "), lines[0]
    assert "e.g." in lines[0] and "Traceback" not in run.stderr


@pytest.mark.parametrize(
    "option, value",
    [("--heartbeat", "nan"), ("--heartbeat", "inf"), ("--heartbeat", "0"), ("--heartbeat", "-1"),
     ("--lease-grace", "nan"), ("--lease-grace", "-0.5"), ("--max-db-mb", "0"), ("--max-db-mb", "x"),
     ("--max-peers", "0"), ("--max-peers", "inf"), ("--max-frame-mb", "64"), ("--max-frame-mb", "nan"),
     ("--max-payload-kb", "0"), ("--max-payload-kb", "1e3"), ("--max-batch", "100001"), ("--max-batch", "-1")],
)  # fmt: skip
def test_ajbroker_refuses_a_bad_option_and_starts_nothing(option: str, value: str, tmp_path: Path) -> None:
    # Given an option of no sense, When ajbroker starts with it
    db = tmp_path / "ajq.db"
    run = run_cli("ajq.broker", "--bind", f"tcp://127.0.0.1:{free_port()}", "--db", str(db), option, value)
    # Then it says so in one line, and no database was created.
    assert_refused(run, "ajbroker", option)
    assert not db.exists()


@pytest.mark.parametrize(
    "option, value",
    [("--prefetch", "-5"), ("--shutdown-timeout", "nan"), ("--shutdown-timeout", "inf"),
     ("--shutdown-timeout", "-1"), ("--max-memory-per-child", "inf"), ("--max-tasks-per-child", "-1"),
     ("--procs", "0"), ("--procs", "many")],
)  # fmt: skip
def test_ajworker_refuses_a_bad_option(option: str, value: str) -> None:
    run = run_cli("ajq.worker", "--broker", f"tcp://127.0.0.1:{free_port()}", option, value, "tests.apps.basic:router")
    assert_refused(run, "ajworker", option)


@pytest.mark.parametrize(
    "args, option",
    [(["--timeout", "nan", "info"], "--timeout"), (["--timeout", "inf", "info"], "--timeout"),
     (["top", "--interval", "0"], "--interval"), (["queue", "configure", "Q", "--concurrent", "0"], "--concurrent")],
)  # fmt: skip
def test_ajc_refuses_a_bad_option(args: list[str], option: str) -> None:
    run = run_cli("ajq.client.cli", "--broker", f"tcp://127.0.0.1:{free_port()}", *args)
    assert run.returncode == 2, run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert f"argument {option}: " in line and "e.g." in line


@pytest.mark.parametrize(
    "settings, name",
    [({"heartbeat_s": NAN}, "heartbeat_s"), ({"heartbeat_s": INF}, "heartbeat_s"),
     ({"lease_grace_s": NAN}, "lease_grace_s"), ({"lease_grace_s": -1.0}, "lease_grace_s"),
     ({"lease_bound_s": NAN}, "lease_bound_s"), ({"lease_bound_s": 1.5}, "lease_bound_s"),
     ({"max_db_mb": 0}, "max_db_mb"), ({"max_batch_messages": 0}, "max_batch_messages"),
     ({"max_peers": 0}, "max_peers"), ({"max_frame_mb": 64}, "max_frame_mb"), ({"max_batch": 0}, "max_batch"),
     ({"max_frame_mb": 2, "max_payload_kb": 1025}, "max_payload_kb"), ({"max_payload_kb": NAN}, "max_payload_kb")],
)  # fmt: skip
def test_broker_config_refuses_nonsense(settings: dict[str, Any], name: str) -> None:
    with pytest.raises(BrokerConfigError, match=rf"^{name}=.*: give .*, e\.g\. {name}="):
        BrokerConfig(**settings)


def test_the_lease_bound_is_three_heartbeats_unless_set() -> None:
    assert BrokerConfig(heartbeat_s=0.5).lease_bound_s == 1.5
    assert BrokerConfig(heartbeat_s=0.5, lease_bound_s=10).silent_after_s == 11.0


@pytest.mark.parametrize(
    "settings, name",
    [({"heartbeat_s": INF}, "heartbeat_s"), ({"ack_timeout_s": NAN}, "ack_timeout_s"),
     ({"shutdown_timeout_s": NAN}, "shutdown_timeout_s"), ({"prefetch": -5}, "prefetch"),
     ({"procs": 0}, "procs"), ({"procs": True}, "procs"), ({"max_memory_per_child_mb": NAN}, "max_memory_per_child_mb"),
     ({"max_tasks_per_child": -1}, "max_tasks_per_child")],
)  # fmt: skip
def test_worker_config_refuses_nonsense(settings: dict[str, Any], name: str) -> None:
    with pytest.raises(WorkerConfigError, match=rf"^{name}=.*: give .*, e\.g\. {name}="):
        WorkerConfig(**settings)


@pytest.mark.parametrize(
    "intervals, jitter, name",
    [([1.0, INF], 0.0, r"intervals\[1\]"), ([NAN], 0.0, r"intervals\[0\]"), ([-1.0], 0.0, r"intervals\[0\]"),
     ([1.0], NAN, "jitter"), ([1.0], INF, "jitter"), ([], 0.0, "intervals")],
)  # fmt: skip
def test_retry_policy_refuses_nonsense(intervals: list[float], jitter: float, name: str) -> None:
    with pytest.raises(WorkerConfigError, match=rf"^RetryPolicy\(intervals=\[\]\)|^{name}="):
        RetryPolicy(intervals, jitter)


# -- the client: refused before anything is sent ---------------------------------------------


@pytest.fixture
def offline() -> Iterator[Client]:
    """A client of a port where no broker listens: a refused argument must never reach the wire."""
    with Client(f"tcp://127.0.0.1:{free_port()}", timeout=0.5) as c:
        yield c


@pytest.mark.parametrize(
    "options, words",
    [({"delay": NAN}, "delay=nan"), ({"delay": INF}, "delay=inf"), ({"delay": -1}, "delay=-1"),
     ({"delay": timedelta(seconds=-5)}, "delay="), ({"deadline": 0}, "deadline=0"),
     ({"deadline": datetime(2030, 1, 1)}, "has no timezone"), ({"run_at": datetime(2030, 1, 1)}, "has no timezone"),
     ({"delay": datetime(2030, 1, 1)}, "has no timezone"), ({"run_at": NAN}, "run_at=nan"),
     ({"unique_for": INF}, "unique_for=inf"), ({"unique_for": 0}, "unique_for=0"),
     ({"depends_on": [1, 2]}, "depends_on holds 1"), ({"delay": True}, "delay=True")],
)  # fmt: skip
def test_submit_refuses_a_bad_option_before_sending(offline: Client, options: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidArgument, match=words.replace("(", r"\(")):
        offline.submit("echo", 1, **options)


@pytest.mark.parametrize("call", [
    lambda c: c.wait("x", timeout=NAN), lambda c: c.wait("x", timeout=INF), lambda c: c.get("x", timeout=NAN),
    lambda c: c.configure_queue("Q", max_run_time=NAN), lambda c: c.configure_queue("Q", retention=INF),
    lambda c: c.configure_queue("Q", max_concurrent=NAN), lambda c: c.configure_queue("Q", max_tries=0),
    lambda c: c.configure_queue("Q", max_concurrent=True), lambda c: c.configure_queue("Q", dead_max=-1),
    lambda c: c.submit_many([{"type": "echo", "delay_s": 1}]),
])  # fmt: skip
def test_client_calls_refuse_nonsense(offline: Client, call: Any) -> None:
    with pytest.raises(InvalidArgument):
        call(offline)


@pytest.mark.parametrize("timeout", [NAN, INF, 0, -1])
def test_clients_refuse_a_nonsense_timeout(timeout: float) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(InvalidArgument, match="timeout="):
        Client(endpoint, timeout=timeout)
    with pytest.raises(InvalidArgument, match="timeout="):
        AsyncClient(endpoint, timeout=timeout)


# -- the client: what Python users pass, against a real broker --------------------------------


@pytest.fixture
def worker(broker: BrokerHandle, tmp_path: Path) -> Iterator[Proc]:
    proc = start_worker(broker, tmp_path, "tests.apps.basic:router", procs=2)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.mark.timeout(60)
def test_depends_on_takes_none_empty_tuples_iterables_and_submitted(broker: BrokerHandle, worker: Proc) -> None:
    c = broker.client()
    # Given parents named every way a user may name them
    a, b = c.submit("echo", "a"), c.submit("echo", "b")
    a_info = c.wait(a.id, timeout=20)
    forms: list[Any] = [None, [], (), (a.id, b.id), [a, b], (x for x in (a, b.id)), a, a.id, a_info, {a.id: 1}]
    # When children are submitted with each
    children = [c.submit("parents", None, depends_on=form, load_results=True) for form in forms]
    # Then every child completes, with exactly the parents it was given.
    ended = [c.wait(t.id, timeout=20) for t in children]
    assert [t.state for t in ended] == ["complete"] * len(forms)
    assert [t.depends_on for t in ended] == [[], [], [], [a.id, b.id], [a.id, b.id], [a.id, b.id],
                                             [a.id], [a.id], [a.id], [a.id]]  # fmt: skip


@pytest.mark.timeout(60)
def test_delay_and_deadline_take_seconds_timedeltas_and_aware_datetimes(broker: BrokerHandle) -> None:
    c = broker.client()
    # Given no worker, so tasks stay as submitted
    before = datetime.now(UTC)
    # When delays and deadlines are given as seconds, timedeltas and aware datetimes
    later = [
        c.submit("echo", 1, delay=600),
        c.submit("echo", 1, delay=timedelta(minutes=10)),
        c.submit("echo", 1, delay=before + timedelta(minutes=10)),
        c.submit("echo", 1, run_at=before + timedelta(minutes=10)),
        c.submit("echo", 1, run_at=(before + timedelta(minutes=10)).timestamp()),
    ]
    expiring = [
        c.submit("echo", 1, deadline=600),
        c.submit("echo", 1, deadline=timedelta(minutes=10)),
        c.submit("echo", 1, deadline=before + timedelta(minutes=10)),
    ]
    # Then each is scheduled, or expires, ten minutes from now.
    for t in later:
        run_at = c.get(t.id).run_at
        assert run_at is not None and abs((run_at - before).total_seconds() - 600) < 30, run_at
    for t in expiring:
        deadline = c.get(t.id).deadline
        assert deadline is not None and abs((deadline - before).total_seconds() - 600) < 30, deadline


@pytest.mark.timeout(60)
def test_a_retry_policy_answering_nan_or_infinity_fails_the_try_clearly(broker: BrokerHandle, tmp_path: Path) -> None:
    c = broker.client()
    c.configure_queue("DEFAULT", max_tries=3)
    # Given a worker whose router's policy returns NaN, then infinity
    proc = start_worker(broker, tmp_path, "tests.apps.badpolicy:router")
    try:
        # When a task fails every try
        t = c.submit("always_fail", None)
        info = wait_for(lambda: (i := c.get(t.id)).state == "dead" and i, 20, "the task to die")
    finally:
        proc.stop()
    # Then every try was reported and counted (none lost in a broken batch), and the error says why.
    assert info.tries == 3
    assert info.last_error is not None
    assert "this handler always fails" in info.last_error
    assert "returned inf, not finite seconds" in info.last_error
