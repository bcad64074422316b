"""The worker supervisor stepped by a moved clock: hard timeouts, the lease bound, heartbeats and
shutdown happen when the test moves time, not when it waits.

The real Supervisor runs here, with real forked children running the handlers below. The broker's
side is a raw ROUTER socket that the test answers for as the broker would (SPEC 3.4, 3.5), so it
sees every message the supervisor sends and gives every answer itself. A step is one
`loop(now, ready)` at the rig's time; what is waited for, by polling with a deadline, is only the
arrival of messages and of a child's outcome.

The rig's clock starts AHEAD_S ahead of the real monotonic clock. The kill time the supervisor writes
for a child's own kernel timer (worker/watchdog.py, on the real CLOCK_MONOTONIC, which no test can
move) then lies far in the real future: that timer never fires here, and what is tested is the
supervisor's own decisions, on the moved clock.
"""

from __future__ import annotations

import gc
import itertools
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq

from ajq import Router, Task
from ajq.protocol import Frame, Kind, decode, encode, encode_value
from ajq.protocol.clock import Now
from ajq.protocol.limits import MAX_BATCH, MAX_FRAME_BYTES
from ajq.worker.config import WorkerConfig
from ajq.worker.lease_bound import LEAD_S
from ajq.worker.retry import RETRY_DEFAULT
from ajq.worker.supervisor import Supervisor
from tests.harness import gone, wait_for

AHEAD_S = 1000  # the rig's monotonic clock starts this far ahead of the real one (whole seconds)
HEARTBEAT_S = 10.0  # the welcome's
BOUND_S = 30.0  # the welcome's lease_bound_s
GRACE_S = 2.0  # the welcome's lease_grace_s
SHUTDOWN_S = 8.0
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGTSTP)

router = Router()


@router.handler("block")
def block(task: Task) -> None:
    """Runs until its process is killed."""
    threading.Event().wait()


@router.handler("echo")
def echo(task: Task) -> Any:
    return task.payload


class MovedClock:
    """The time the test says it is; it moves only when the test moves it."""

    def __init__(self) -> None:
        # Whole seconds, so that times the supervisor adds up (arrival + run time) are exact.
        self.time = Now(float(int(time.monotonic()) + AHEAD_S), float(int(time.time())))

    def now(self) -> Now:
        return self.time

    def set(self, mono: float) -> None:
        self.time = Now(mono, self.time.wall + (mono - self.time.mono))


class Rig:
    """A Supervisor on a moved clock; its broker, a ROUTER socket the test speaks for."""

    def __init__(self, procs: int = 1) -> None:
        self.clock = MovedClock()
        self.old_handlers = {sig: signal.getsignal(sig) for sig in SIGNALS}
        self.ctx = zmq.Context()
        self.broker = self.ctx.socket(zmq.ROUTER)
        self.broker.setsockopt(zmq.LINGER, 0)
        port = self.broker.bind_to_random_port("tcp://127.0.0.1")
        config = WorkerConfig(
            broker=f"tcp://127.0.0.1:{port}", procs=procs, queues=("Q",), shutdown_timeout_s=SHUTDOWN_S
        )
        self.sup = Supervisor(config, router, RETRY_DEFAULT, clock=self.clock)
        self.ident = self.sup.worker_id.encode()
        self.answering = True  # answer the supervisor's heartbeats, as a broker in touch does
        self.sent: list[Frame] = []  # everything the supervisor sent, in order
        self._unseen: deque[Frame] = deque()  # what it sent that no `expect` has looked at yet
        self._ids = itertools.count(1)
        self.sup.start()

    @property
    def now(self) -> float:
        return self.clock.time.mono

    def close(self) -> None:
        for sig, handler in self.old_handlers.items():
            signal.signal(sig, handler)
        self.sup.close()
        self.broker.close(0)
        self.ctx.term()
        gc.unfreeze()  # the pool froze the test process's objects before forking

    # -- the supervisor's side ----------------------------------------------------------------

    def step(self, wait_ms: int = 0) -> None:
        """One loop at the rig's time, after waiting up to `wait_ms` (real) for something to read."""
        self.sup.loop(self.clock.now(), self.sup.poll(wait_ms))

    def step_until(self, cond: Callable[[], object], what: str, timeout: float = 10.0) -> None:
        """Step (at the same moved time) until `cond` holds; fail after `timeout` real seconds."""
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            self.step(wait_ms=10)
            self._read()

    def running(self) -> list[str]:
        """Ids of the tasks the supervisor's children run."""
        return [c.task["id"] for c in self.sup.pool.busy() if c.task is not None]

    def buffered(self) -> list[str]:
        return [h.item["id"] for h in self.sup.buffer]

    def pid_running(self, task_id: str) -> int:
        [pid] = [c.pid for c in self.sup.pool.busy() if c.task is not None and c.task["id"] == task_id]
        return pid

    # -- the broker's side --------------------------------------------------------------------

    def send(self, kind: Kind, body: dict[str, Any], corr: int = 0) -> None:
        self.broker.send_multipart([self.ident, encode(kind, corr, body)])

    def expect(self, kind: Kind, *, step: bool = True, timeout: float = 10.0) -> tuple[Frame, list[Frame]]:
        """Step the supervisor (unless `step` is False) until it sends a `kind`: that message, and
        the ones it sent before it since the last look."""
        before: list[Frame] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._read()
            while self._unseen:
                frame = self._unseen.popleft()
                if frame.kind is kind:
                    return frame, before
                before.append(frame)
            if step:
                self.step(wait_ms=10)
            else:
                self.broker.poll(10)
        raise AssertionError(f"no {kind.value} within {timeout}s; sent before: {[f.kind.value for f in before]}")

    def register(self) -> None:
        """Welcome the supervisor's HELLO (lease bound BOUND_S) and wait for its first credit."""
        hello, _ = self.expect(Kind.HELLO)
        welcome = {
            "heartbeat_s": HEARTBEAT_S, "lease_bound_s": BOUND_S, "lease_grace_s": GRACE_S,
            "max_frame_bytes": MAX_FRAME_BYTES, "max_batch": MAX_BATCH, "running": [], "unused_queues": [],
        }  # fmt: skip
        self.send(Kind.REPLY, {"data": welcome}, hello.corr)
        self.expect(Kind.CREDIT)

    def deliver(self, type_: str, run_time_s: float, payload: Any = None) -> dict[str, Any]:
        """DELIVER one task and step until the supervisor holds it (running or buffered)."""
        task_id = f"t{next(self._ids)}"
        item = {
            "id": task_id, "token": next(self._ids), "type": type_, "queue": "Q", "payload": encode_value(payload),
            "tries": 1, "max_tries": 3, "run_time_s": run_time_s,
        }  # fmt: skip
        self.send(Kind.DELIVER, {"tasks": [item]})
        self.step_until(lambda: task_id in self.running() + self.buffered(), f"{task_id} to be held")
        return item

    def _read(self) -> None:
        """Take in what the supervisor sent; answer its heartbeats while `answering`."""
        while self.broker.poll(0):
            _ident, data = self.broker.recv_multipart()
            frame = decode([data], validate=False)
            if frame.kind is Kind.HEARTBEAT and frame.corr and self.answering:
                self.send(Kind.REPLY, {"data": {}}, frame.corr)
            self.sent.append(frame)
            self._unseen.append(frame)


def kinds(frames: list[Frame]) -> list[str]:
    return [f.kind.value for f in frames]


def _rig(procs: int) -> Iterator[Rig]:
    r = Rig(procs)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def rig() -> Iterator[Rig]:
    yield from _rig(procs=1)


@pytest.fixture
def rig_of_two() -> Iterator[Rig]:
    yield from _rig(procs=2)


@pytest.mark.timeout(30)
def test_a_task_past_its_run_time_is_killed_as_a_failed_try_when_the_clock_passes_it(rig: Rig) -> None:
    # Given a registered worker running a task with a max_run_time of 5 s, delivered at t.
    rig.register()
    t = rig.now
    task = rig.deliver("block", run_time_s=5.0)
    pid = rig.pid_running(task["id"])
    # When the clock stands a moment short of t + 5 s, Then the task runs on, in the same process.
    rig.clock.set(t + 4.99)
    rig.step()
    assert rig.running() == [task["id"]] and rig.pid_running(task["id"]) == pid
    # When it reaches t + 5 s, Then the process is killed and the try reported failed: a hard timeout.
    rig.clock.set(t + 5.0)
    results, _ = rig.expect(Kind.RESULTS)
    [outcome] = results.body["results"]
    assert (outcome["id"], outcome["token"], outcome["outcome"]) == (task["id"], task["token"], "fail")
    assert outcome["error"].startswith("hard timeout: the handler ran past max_run_time (5s)")
    assert "retry_in_s" in outcome and Kind.RELEASE.value not in kinds(rig.sent)
    wait_for(lambda: gone(pid), 10, "the killed process to end")
    # And a new process takes its place, idle.
    assert rig.running() == [] and len(rig.sup.pool.idle()) == 1 and rig.sup.pool.idle()[0].pid != pid


@pytest.mark.timeout(30)
def test_out_of_touch_for_the_lease_bound_it_kills_the_running_task_and_starts_none(rig_of_two: Rig) -> None:
    # Given a registered worker of two processes (lease bound 30 s, contact confirmed at t), running
    # a long task, and a broker that answers no heartbeat from now on.
    rig = rig_of_two
    rig.register()
    t = rig.now
    long = rig.deliver("block", run_time_s=1000.0)
    pid = rig.pid_running(long["id"])
    rig.answering = False
    stop = t + BOUND_S - LEAD_S  # the supervisor acts LEAD_S before the child's own timer would
    # When a task is delivered a moment short of the bound, Then it starts and ends, and the long one runs on.
    rig.clock.set(stop - 0.01)
    early = rig.deliver("echo", run_time_s=1000.0, payload="early")
    results, _ = rig.expect(Kind.RESULTS)
    assert [(r["id"], r["outcome"]) for r in results.body["results"]] == [(early["id"], "complete")]
    assert rig.running() == [long["id"]]
    # When the clock reaches the bound (less the lead) and another task arrives,
    rig.clock.set(stop)
    late = rig.deliver("echo", run_time_s=1000.0, payload="late")
    # Then the running task is killed as a failed try, naming the bound, and the new one does not start.
    results, _ = rig.expect(Kind.RESULTS)
    [outcome] = results.body["results"]
    assert (outcome["id"], outcome["outcome"]) == (long["id"], "fail")
    assert outcome["error"].startswith("no answer from the broker for the lease bound (30s)")
    assert rig.running() == [] and rig.buffered() == [late["id"]]
    wait_for(lambda: gone(pid), 10, "the killed process to end")
    for _ in range(3):
        rig.step()
    assert rig.running() == [] and rig.buffered() == [late["id"]]
    # And when the broker answers a heartbeat again, contact is back and the task runs.
    rig.answering = True
    rig.clock.set(stop - 0.01 + HEARTBEAT_S)  # the next heartbeat is due
    results, _ = rig.expect(Kind.RESULTS)
    assert [(r["id"], r["outcome"]) for r in results.body["results"]] == [(late["id"], "complete")]


@pytest.mark.timeout(30)
def test_a_heartbeat_goes_when_the_clock_passes_the_interval_and_none_before(rig: Rig) -> None:
    # Given a registered worker, whose first heartbeat went with its registration at t.
    rig.register()
    t = rig.now
    assert kinds(rig.sent).count(Kind.HEARTBEAT.value) == 1
    # When the clock stands a moment short of t + heartbeat_s and a task runs to its end,
    rig.clock.set(t + HEARTBEAT_S - 0.01)
    task = rig.deliver("echo", run_time_s=60.0, payload=1)
    results, _ = rig.expect(Kind.RESULTS)
    # Then the supervisor sent its outcome and no heartbeat.
    assert [r["id"] for r in results.body["results"]] == [task["id"]]
    assert kinds(rig.sent).count(Kind.HEARTBEAT.value) == 1
    # And when the clock reaches t + heartbeat_s, the next step sends one, with a corr to answer.
    rig.clock.set(t + HEARTBEAT_S)
    beat, before = rig.expect(Kind.HEARTBEAT)
    assert beat.corr != 0 and before == []
    assert kinds(rig.sent).count(Kind.HEARTBEAT.value) == 2


@pytest.mark.timeout(30)
def test_sigterm_gives_running_tasks_the_shutdown_timeout_then_hands_them_back(rig: Rig) -> None:
    # Given a registered worker (shutdown timeout 8 s) running a task, its signal handlers installed.
    rig.register()
    task = rig.deliver("block", run_time_s=3600.0)
    pid = rig.pid_running(task["id"])
    rig.sup.install_signals()
    # When SIGTERM arrives and the loop takes it at t (it pauses the broker's credit at once),
    t = rig.now
    signal.raise_signal(signal.SIGTERM)
    rig.expect(Kind.PAUSE)
    # Then the task runs on a moment short of t + 8 s,
    rig.clock.set(t + SHUTDOWN_S - 0.01)
    rig.step()
    assert rig.running() == [task["id"]] and not rig.sup.finished()
    # And at t + 8 s its process is killed and its lease handed back (RELEASE: no try used), no outcome sent.
    rig.clock.set(t + SHUTDOWN_S)
    release, _ = rig.expect(Kind.RELEASE)
    assert release.body["leases"] == [{"id": task["id"], "token": task["token"]}]
    assert Kind.RESULTS.value not in kinds(rig.sent)
    wait_for(lambda: gone(pid), 10, "the killed process to end")
    assert rig.sup.pool.children == {} and rig.sup.finished()  # stopping: not replaced
    # And once the broker takes the release, the supervisor says BYE.
    rig.send(Kind.REPLY, {"data": {"accepted": [task["id"]], "refused": []}}, release.corr)
    rig.sup.leave()
    rig.expect(Kind.BYE, step=False)
