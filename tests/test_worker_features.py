"""Worker features: middleware, the error handler, task.extend, dependency results, child recycling,
cancel, and weighted/strict queues on the command line.

Unit tests call worker.child.run_one and the CLI parser directly; the rest run real broker and worker
processes (tests/harness.py) with the handlers in tests/apps/features.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from multiprocessing import Pipe
from pathlib import Path
from typing import Any

import msgpack
import psutil
import pytest

from ajq import Client, Router, Task, TerminateTask
from ajq.protocol import Kind, decode_value, encode_value
from ajq.worker.child import run_one
from ajq.worker.cli import build_parser, config_from_args
from ajq.worker.errors import NoHandler, WorkerConfigError
from ajq.worker.pool import Child, ErrorHandlerRuns, Extend, Pool
from ajq.worker.watchdog import shared_kill_at
from tests.apps import features
from tests.harness import BrokerHandle, Proc, events, start_worker, wait_for

APP = "tests.apps.features:router"


def delivery(task_type: str, payload: Any = None, **extra: Any) -> dict[str, Any]:
    """A delivery item as the supervisor hands it to a child (DELIVER_ITEM plus deadline_wall)."""
    item = {
        "id": "t1",
        "token": 7,
        "type": task_type,
        "queue": "DEFAULT",
        "payload": encode_value(payload),
        "tries": 1,
        "max_tries": 3,
        "run_time_s": 5.0,
        "deadline_wall": time.time() + 5,
    }
    return item | extra


def error_lines(test_dir: Path, task_id: str) -> list[tuple[str, int, int, int]]:
    """The error handler's calls for one task: (error type, tries, max_tries, pid)."""
    path = test_dir / "errors.log"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        tid, kind, tries, max_tries, pid = line.split()
        if tid == task_id:
            out.append((kind, int(tries), int(max_tries), int(pid)))
    return out


# -- without processes --------------------------------------------------------------------------


def test_dependency_results_are_decoded_for_the_handler() -> None:
    # Given a delivery carrying two parents' results as msgpack bytes.
    parents = {"p1": encode_value({"a": 1}), "p2": encode_value([1, "two"])}
    # When a child runs it, Then the handler sees them decoded, by parent id.
    outcome = run_one(features.router, delivery("deps", dependency_results=parents))
    assert outcome["outcome"] == "complete"
    assert decode_value(outcome["result"]) == {"p1": {"a": 1}, "p2": [1, "two"]}
    # And without the field it is an empty dict.
    assert decode_value(run_one(features.router, delivery("deps"))["result"]) == {}


def test_middleware_runs_outermost_first_in_the_child() -> None:
    # Given two middlewares registered outer then inner, When a task runs,
    outcome = run_one(features.router, delivery("trace", []))
    # Then each wraps the next, the first registered outermost.
    assert decode_value(outcome["result"]) == ["outer-in", "inner-in", "handler", "inner-out", "outer-out"]


def test_error_handler_gets_no_handler_and_terminate_and_its_own_errors_are_swallowed() -> None:
    # Given a router without a catch-all whose error handler records its calls, then raises.
    calls: list[tuple[str, type[BaseException], int, int]] = []
    r = Router()

    @r.handler("bad")
    def bad(task: Task) -> None:
        raise TerminateTask("never")

    @r.on_error
    def hook(task: Task, error: BaseException, tries: int, max_tries: int) -> None:
        calls.append((task.id, type(error), tries, max_tries))
        raise RuntimeError("the hook fails on purpose")

    # When a task has no handler, and another raises TerminateTask,
    no_handler = run_one(r, delivery("other"))
    terminated = run_one(r, delivery("bad", tries=2))
    # Then each is one failed try, reported once, and the hook's error changes no outcome.
    assert no_handler["outcome"] == "fail" and "no handler for task type 'other'" in no_handler["error"]
    assert terminated["outcome"] == "terminate"
    assert calls == [("t1", NoHandler, 1, 3), ("t1", TerminateTask, 2, 3)]
    with pytest.raises(ValueError, match="set already"):
        r.on_error(hook)


def test_extend_sends_a_message_on_the_pipe_and_moves_the_deadline() -> None:
    # Given a child's side channel captured in a list.
    sent: list[dict[str, Any]] = []
    before = time.time()
    # When a handler calls task.extend(30) on a queue whose max_run_time is 5 s,
    outcome = run_one(features.router, delivery("extend_once", {"s": 30}), sent.append)
    # Then the supervisor is asked for 30 s for this lease, and the task's deadline is capped at 5 s.
    assert sent[0] == {"extend": 30, "token": 7}
    assert outcome["outcome"] == "complete"
    assert before + 5 <= decode_value(outcome["result"]) <= time.time() + 5


def test_pool_read_tells_extend_and_error_marker_from_the_outcome() -> None:
    # Given a pipe whose far end speaks as a child does.
    parent_end, child_end = Pipe(duplex=True)
    pool = Pool(1, features.router)
    child = Child(pid=0, conn=parent_end, kill_at=shared_kill_at())
    router = Router()
    router.on_error(lambda task, error, tries, max_tries: None)

    @router.handler("x")
    def x(task: Task) -> None:
        task.extend(2)
        raise ValueError("no")

    def send(msg: dict[str, Any]) -> None:
        child_end.send_bytes(msgpack.packb(msg))

    # When a handler extends its lease and then fails,
    send(run_one(router, delivery("x"), send))
    # Then the supervisor reads an extend, the error-handler marker, and only then the outcome.
    assert pool.read(child) == Extend(2.0, 7)
    assert pool.read(child) == ErrorHandlerRuns(7)
    last = pool.read(child)
    assert isinstance(last, dict) and last["outcome"] == "fail"
    child_end.close()
    assert pool.read(child) is None


def test_cli_parses_weighted_and_strict_queues() -> None:
    # When ajworker is given weights and --strict, Then the config keeps them in the order given.
    args = build_parser().parse_args(["app:router", "--queue", "a=3", "--queue", "b=1", "--strict"])
    config = config_from_args(args)
    assert (config.queues, config.weights, config.strict) == (("a", "b"), (3, 1), True)
    # And a bare name has weight 1; without --queue it is DEFAULT, not strict.
    bare = config_from_args(build_parser().parse_args(["app:router", "--queue", "c", "--queue", "d=1000"]))
    assert (bare.queues, bare.weights, bare.strict) == (("c", "d"), (1, 1000), False)
    default = config_from_args(build_parser().parse_args(["app:router"]))
    assert (default.queues, default.weights, default.strict) == (("DEFAULT",), (1,), False)
    # And recycling limits have their units in their names.
    limits = build_parser().parse_args(["app:router", "--max-tasks-per-child", "5", "--max-memory-per-child", "256"])
    assert (config_from_args(limits).max_tasks_per_child, config_from_args(limits).max_memory_per_child_mb) == (5, 256)


@pytest.mark.parametrize(
    ("queue", "message"), [("a=0", "from 1 to 1000"), ("a=1001", "from 1 to 1000"), ("a=x", "not an integer")]
)
def test_cli_refuses_a_bad_weight(queue: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    # When a weight is out of range or not a number, Then argparse exits 2 naming the rule.
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["app:router", "--queue", queue])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_queue_named_twice_is_a_config_error() -> None:
    with pytest.raises(WorkerConfigError, match="named twice"):
        config_from_args(build_parser().parse_args(["app:router", "--queue", "a=2", "--queue", "a"]))


# -- with a broker and a worker -----------------------------------------------------------------


@pytest.fixture
def worker(broker: BrokerHandle, tmp_path: Path) -> Iterator[Proc]:
    """Given a 2-process worker on DEFAULT and on E (max_tries 2, max_run_time 1 s)."""
    broker.client().configure_queue("E", max_tries=2, max_run_time=1)
    proc = start_worker(broker, tmp_path, APP, procs=2, queues=("DEFAULT", "E"))
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def c(broker: BrokerHandle, worker: Proc) -> Client:
    return broker.client()


def test_middleware_order_end_to_end(c: Client) -> None:
    # When a task runs through two middlewares, Then they nest outermost first, around the handler.
    info = c.wait(c.submit("trace", []).id, timeout=20)
    assert (info.state, info.result) == ("complete", ["outer-in", "inner-in", "handler", "inner-out", "outer-out"])


def test_error_handler_once_per_failed_try_for_an_exception(c: Client, worker: Proc, tmp_path: Path) -> None:
    # When a handler always raises on a queue with max_tries 2,
    t = c.submit("fail", None, queue="E")
    assert c.wait(t.id, timeout=20).state == "dead"
    # Then the error handler ran once per try, in the child, with (tries, max_tries).
    lines = error_lines(tmp_path, t.id)
    assert [line[:3] for line in lines] == [("ValueError", 1, 2), ("ValueError", 2, 2)]
    assert all(line[3] != worker.pid for line in lines)


def test_error_handler_for_terminate_task_once(c: Client, tmp_path: Path) -> None:
    # When a handler raises TerminateTask, Then it is one failed try that ends the task, reported once.
    t = c.submit("terminate", None, queue="E")
    assert c.wait(t.id, timeout=20).state == "terminated"
    assert [line[:3] for line in error_lines(tmp_path, t.id)] == [("TerminateTask", 1, 2)]


def test_error_handler_in_the_supervisor_when_the_child_is_killed(c: Client, worker: Proc, tmp_path: Path) -> None:
    # Given an error handler that raises (on purpose) after recording,
    # When the child running the task is SIGKILLed on each of its 2 tries,
    t = c.submit("die", {"hook_raises": True}, queue="E")
    info = c.wait(t.id, timeout=20)
    assert (info.state, info.tries) == ("dead", 2)
    # Then the supervisor ran the error handler once per try with ChildDied (on its hook thread,
    # so the last call may end after the task does),
    expected = [("ChildDied", 1, 2, worker.pid), ("ChildDied", 2, 2, worker.pid)]
    wait_for(lambda: error_lines(tmp_path, t.id) == expected, 10, "both error handler calls")
    wait_for(lambda: worker.tail(200).count("the error handler raised") == 2, 10, "both calls to raise")
    # and the worker survives its error handler's error.
    assert worker.alive()
    assert c.wait(c.submit("echo", 5, queue="E").id, timeout=20).result == 5


def test_error_handler_in_the_supervisor_on_hard_timeout(c: Client, worker: Proc, tmp_path: Path) -> None:
    # When a handler sleeps past max_run_time (1 s) on both tries,
    t = c.submit("sleep", {"s": 30}, queue="E")
    info = c.wait(t.id, timeout=30)
    assert (info.state, info.tries) == ("dead", 2)
    assert "hard timeout" in (info.last_error or "")
    # Then the supervisor reported each killed try once, with HardTimeout.
    expected = [("HardTimeout", 1, 2, worker.pid), ("HardTimeout", 2, 2, worker.pid)]
    wait_for(lambda: error_lines(tmp_path, t.id) == expected, 10, "both error handler calls")


def test_a_slow_error_handler_in_the_supervisor_stops_nothing_else(c: Client, worker: Proc, tmp_path: Path) -> None:
    # Given an error handler that takes 30 s for a task whose child is SIGKILLed (the supervisor runs it),
    t = c.submit("die", {"hook_sleep": 30}, queue="E")
    wait_for(lambda: error_lines(tmp_path, t.id), 10, "the error handler to start")
    # When a task runs meanwhile for longer than the lease bound plus its margin (0.6 + 1 s),
    # extending its 1 s lease every 0.5 s (the supervisor's loop must answer),
    info = c.wait(c.submit("long", {"s": 2.5}, queue="E").id, timeout=20)
    # Then it completes on its first try: the loop kept its heartbeats and its lease bound going.
    assert (info.state, info.tries) == ("complete", 1), info.last_error
    assert any(w.pid == worker.pid for w in c.workers())


def test_extend_keeps_a_long_task_past_max_run_time(c: Client, tmp_path: Path) -> None:
    # Given a queue with max_run_time 1 s, When a handler runs 2.5 s calling task.extend(3) every 0.5 s,
    t = c.submit("long", {"s": 2.5}, queue="E")
    info = c.wait(t.id, timeout=30)
    # Then it completes on its first try: neither the worker's hard timeout nor the broker's lease ended it.
    assert (info.state, info.tries, info.result) == ("complete", 1, 1), info.last_error
    assert [e[0] for e in events(tmp_path) if e[1] == t.id] == ["start", "end"]
    assert error_lines(tmp_path, t.id) == []


@pytest.mark.timeout(90)
def test_child_recycled_after_max_tasks(broker: BrokerHandle, tmp_path: Path, procs: list[Proc]) -> None:
    # Given one process replaced every 2 tasks,
    c = broker.client()
    procs.append(start_worker(broker, tmp_path, APP, queues=("R",), extra=["--max-tasks-per-child", "2"]))
    # When 6 tasks run one after another,
    ids = c.submit_many([("pid", None) for _ in range(6)], queue="R")
    pids = [c.wait(i, timeout=20).result for i in ids]
    # Then every 2 tasks run in a new process.
    assert pids[0] == pids[1] and pids[2] == pids[3] and pids[4] == pids[5], pids
    assert len({pids[0], pids[2], pids[4]}) == 3, pids


@pytest.mark.timeout(90)
def test_child_recycled_over_memory_limit_after_its_task(
    broker: BrokerHandle, tmp_path: Path, procs: list[Proc]
) -> None:
    # Given one process replaced when its memory is over 100 MB after a task,
    c = broker.client()
    w = start_worker(broker, tmp_path, APP, queues=("M",), extra=["--max-memory-per-child", "100"])
    procs.append(w)
    first = c.wait(c.submit("pid", None, queue="M").id, timeout=20)
    # When a handler keeps 200 MB, Then it finishes its task in the same process,
    hog = c.wait(c.submit("hog", {"mb": 200}, queue="M").id, timeout=30)
    assert (first.state, hog.state) == ("complete", "complete")
    assert hog.result == first.result
    # and the next task runs in a new process, the old one gone.
    after = c.wait(c.submit("pid", None, queue="M").id, timeout=20)
    assert after.state == "complete" and after.result != hog.result
    wait_for(lambda: not psutil.pid_exists(hog.result), 10, "the retired process to be reaped")
    assert "replacing process" in w.tail(50)


def test_cancel_kills_the_running_task_and_drops_a_buffered_one(
    broker: BrokerHandle, tmp_path: Path, procs: list[Proc]
) -> None:
    # Given one process running a 30 s task, with a second task delivered and waiting (prefetch 1).
    c = broker.client()
    w = start_worker(broker, tmp_path, APP, queues=("C",), extra=["--prefetch", "1"])
    procs.append(w)
    running = c.submit("sleep", {"s": 30}, queue="C")
    waiting = c.submit("sleep", {"s": 30}, queue="C")
    started = wait_for(lambda: [e for e in events(tmp_path) if e[0] == "start"], 15, "the first task to start")
    assert started[0][1] == running.id
    wait_for(lambda: c.get(waiting.id).state == "active", 10, "the second task to be delivered")
    # When both are cancelled,
    began = time.monotonic()
    c.call(Kind.CANCEL, {"id": waiting.id})
    c.call(Kind.CANCEL, {"id": running.id})
    # Then both end terminated at once: the running one's process killed, the waiting one never started.
    assert c.wait(running.id, timeout=5).state == "terminated"
    assert c.wait(waiting.id, timeout=5).state == "terminated"
    assert time.monotonic() - began < 3
    wait_for(lambda: not psutil.pid_exists(started[0][3]), 5, "the cancelled task's process to be gone")
    assert [e[1] for e in events(tmp_path) if e[0] == "start"] == [running.id]
    log = w.tail(100)
    assert f"task {running.id} (sleep): cancelled" in log and f"task {waiting.id} (sleep): cancelled" in log
    # And the pool still serves.
    assert c.wait(c.submit("echo", 1, queue="C").id, timeout=20).result == 1


def test_a_handler_sees_its_try_number_and_lease_token_to_fence_its_own_writes() -> None:
    outcome = run_one(features.router, delivery("fencing", tries=2))
    assert outcome["outcome"] == "complete" and decode_value(outcome["result"]) == [2, 7]
