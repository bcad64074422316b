"""The supervisor: one poll loop over the broker's DEALER socket and every child's pipe.

It asks the broker for work by credit (free slots, prefetch included), hands tasks to idle
children, kills a child whose task runs past its lease (a true hard timeout), replaces dead
children, and reports outcomes in batches. Signal handlers only set flags; the loop acts.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import socket
import time
from collections import deque
from enum import Enum
from typing import Any

import zmq

from protocol import ErrorCode, Kind, ProtocolError, decode, encode
from protocol.limits import MAX_BATCH, MAX_FRAME_BYTES
from worker.config import WorkerConfig
from worker.pool import Child, Pool
from worker.retry import RetryPolicyProvider
from worker.router import Router

log = logging.getLogger("ajq.worker")


BATCH_BYTES = MAX_FRAME_BYTES // 2  # outcomes per RESULTS message, by size


def batches(items: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Split outcomes into messages of at most MAX_BATCH items and about BATCH_BYTES."""
    out: list[list[dict[str, Any]]] = []
    size = 0
    for item in items:
        n = len(item.get("result") or b"") + len(item.get("error") or "") + 64
        if not out or len(out[-1]) >= MAX_BATCH or size + n > BATCH_BYTES:
            out.append([])
            size = 0
        out[-1].append(item)
        size += n
    return out


class Prefetch:
    """How many tasks to hold beyond those running: enough for ~BUFFER_S of work, from an average.

    Short tasks need a deep buffer to hide the broker's round trip (a commit); long ones need
    almost none, and a shallow buffer keeps their lease clock (it starts at delivery) honest.
    """

    BUFFER_S = 0.025
    MAX_PER_PROC = 64

    def __init__(self, procs: int, fixed: int) -> None:
        self.procs = procs
        self.fixed = fixed  # -1: adaptive
        self.avg_s: float | None = None

    def observe(self, run_s: float) -> None:
        self.avg_s = run_s if self.avg_s is None else 0.9 * self.avg_s + 0.1 * run_s

    def depth(self) -> int:
        if self.fixed >= 0:
            return self.fixed
        if self.avg_s is None:
            return self.procs
        want = int(self.procs * self.BUFFER_S / max(self.avg_s, 1e-6)) + 1
        return min(self.MAX_PER_PROC * self.procs, want)


class Mode(Enum):
    RUNNING = "running"
    PAUSED = "paused"  # SIGTSTP: no new tasks; running ones finish
    STOPPING = "stopping"  # SIGTERM/SIGINT: finish or hand back, then leave


class Supervisor:
    def __init__(self, config: WorkerConfig, router: Router, retry: RetryPolicyProvider) -> None:
        self.config = config
        self.retry = retry
        self.pool = Pool(config.procs, router)
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
        self.mode = Mode.RUNNING
        self.buffer: deque[tuple[dict[str, Any], float]] = deque()  # (delivery, deadline) not started yet
        self.outbox: list[dict[str, Any]] = []  # outcomes not sent yet
        self.unacked: dict[int, tuple[Kind, list[dict[str, Any]]]] = {}  # corr -> what awaits a REPLY
        self.outstanding = 0  # credit granted to the broker and not yet used by a delivery
        self.prefetch = Prefetch(config.procs, config.prefetch)
        self.registered = False
        self.heartbeat_s = config.heartbeat_s
        self._corr = itertools.count(1)
        self._hello_corr = 0
        self._next_hello = 0.0
        self._next_beat = 0.0
        self._last_heard = time.monotonic()
        self._stop_deadline: float | None = None
        self._signals: list[int] = []
        self._wake_r, self._wake_w = socket.socketpair()
        for s in (self._wake_r, self._wake_w):
            s.setblocking(False)

    # -- set-up -------------------------------------------------------------------------------

    def install_signals(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGTSTP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._signals.append(signum)
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def run(self) -> None:
        """Fork the pool (before any ZeroMQ context exists), connect, loop until stopped."""
        self.pool.start()
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.ROUTING_ID, self.worker_id.encode())
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(self.config.broker)
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)
        self.poller.register(self._wake_r.fileno(), zmq.POLLIN)
        for child in self.pool.children.values():
            self.poller.register(child.fd, zmq.POLLIN)
        log.info("worker %s: %d processes, queues %s", self.worker_id, self.config.procs, ",".join(self.config.queues))
        try:
            while not self._finished():
                self.loop(time.monotonic())
            self._leave()
        finally:
            self.pool.stop()
            self.sock.close(0)
            self.ctx.term()

    # -- the loop -----------------------------------------------------------------------------

    def loop(self, now: float) -> None:
        """One iteration: wait for anything, then act on all of it and send one batch."""
        ready = dict(self.poller.poll(self._timeout_ms(now)))
        now = time.monotonic()
        self._take_signals(now)
        if ready.get(self.sock):
            self._read_broker(now)
        for child in list(self.pool.children.values()):
            if ready.get(child.fd):
                self._read_child(child)
        self._enforce_deadlines(now)
        self._start_tasks(now)
        self._keep_in_touch(now)
        self._flush()

    def _timeout_ms(self, now: float) -> int:
        """Until the next timer: a heartbeat (or HELLO), a child's deadline, the shutdown deadline."""
        times = [now + self.heartbeat_s]
        if self.registered:
            times.append(self._next_beat)
        elif self.mode is not Mode.STOPPING:
            times.append(self._next_hello)
        times += [c.deadline for c in self.pool.children.values() if c.deadline is not None]
        if self._stop_deadline is not None and self.pool.busy():
            times.append(self._stop_deadline)
        return max(0, int((min(times) - now) * 1000) + 1)

    def _finished(self) -> bool:
        return self.mode is Mode.STOPPING and not self.pool.busy() and not self.buffer

    # -- broker messages ----------------------------------------------------------------------

    def _read_broker(self, now: float) -> None:
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._last_heard = now
            try:
                frame = decode(frames)
            except ProtocolError as exc:
                log.error("unreadable message from the broker, ignored: %s", exc)
                continue
            if frame.kind is Kind.DELIVER:
                self._accept(frame.body["tasks"], now)
            elif frame.kind is Kind.REPLY:
                self._on_reply(frame.corr, frame.body["data"])
            elif frame.kind is Kind.ERROR:
                self._on_error(frame.corr, frame.body)

    def _accept(self, tasks: list[dict[str, Any]], now: float) -> None:
        wall = time.time()
        self.outstanding = max(0, self.outstanding - len(tasks))
        for item in tasks:
            item["deadline_wall"] = wall + item["run_time_s"]
            self.buffer.append((item, now + item["run_time_s"]))
        if self.mode is not Mode.RUNNING:
            self._release_buffer()

    def _on_reply(self, corr: int, data: Any) -> None:
        if corr == self._hello_corr:
            self._welcome(data)
            return
        sent = self.unacked.pop(corr, None)
        if sent is not None:
            for task_id, _code, message in data["refused"]:
                log.warning("broker refused the outcome of task %s: %s", task_id, message)

    def _on_error(self, corr: int, body: dict[str, Any]) -> None:
        code = body.get("code")
        if code == ErrorCode.NOT_REGISTERED:
            self.registered = False
            self._next_hello = 0.0
        elif corr in self.unacked:
            kind, items = self.unacked.pop(corr)
            log.error("broker could not take %d outcomes (%s): will resend", len(items), body.get("message"))
            self._requeue(kind, items)
        else:
            log.error("broker error: %s", body.get("message"))

    def _welcome(self, data: dict[str, Any]) -> None:
        self.registered = True
        self.heartbeat_s = float(data["heartbeat_s"])
        log.info("registered with the broker at %s", self.config.broker)
        for kind, items in list(self.unacked.values()):
            self._requeue(kind, items)  # the broker may have missed them: fenced, so resending is safe
        self.unacked.clear()
        self.outstanding = 0  # a new registration starts with no credit

    def _requeue(self, kind: Kind, items: list[dict[str, Any]]) -> None:
        if kind is Kind.RESULTS:
            self.outbox.extend(items)
        else:
            self._send_release(items)

    # -- children -----------------------------------------------------------------------------

    def _read_child(self, child: Child) -> None:
        outcome = self.pool.read(child)
        item = child.task
        if outcome is None:
            fd = child.fd
            cause = self.pool.reap(child)
            self.poller.unregister(fd)
            self._replace(child)
            if item is not None:
                self._report_failure(item, f"the process running the task died: {cause}")
            return
        if item is None:
            return
        self.prefetch.observe(time.monotonic() - child.started)
        child.task = child.deadline = None
        outcome["id"], outcome["token"] = item["id"], item["token"]
        if outcome["outcome"] == "fail":
            outcome["retry_in_s"] = self._retry_delay(item)
        self.outbox.append(outcome)

    def _enforce_deadlines(self, now: float) -> None:
        for child in list(self.pool.children.values()):
            if child.deadline is not None and child.deadline <= now and child.task is not None:
                item = child.task
                self.pool.kill(child)
                self._drop_child(child)
                self._replace(child)
                self._report_failure(
                    item,
                    f"hard timeout: the handler ran past max_run_time ({item['run_time_s']:g}s); "
                    "its process was killed",
                )

    def _drop_child(self, child: Child) -> None:
        fd = child.fd
        self.pool.reap(child)
        self.poller.unregister(fd)

    def _replace(self, child: Child) -> None:
        if self.mode is Mode.STOPPING:
            return
        new = self.pool.spawn()
        self.poller.register(new.fd, zmq.POLLIN)

    def _report_failure(self, item: dict[str, Any], error: str) -> None:
        log.warning("task %s (%s): %s", item["id"], item["type"], error)
        self.outbox.append(
            {
                "id": item["id"],
                "token": item["token"],
                "outcome": "fail",
                "error": error,
                "retry_in_s": self._retry_delay(item),
            }
        )

    def _retry_delay(self, item: dict[str, Any]) -> float:
        try:
            return max(0.0, float(self.retry.delay(item["tries"])))
        except Exception:  # a user's policy must not break the worker
            log.exception("retry policy failed; retrying at once")
            return 0.0

    def _start_tasks(self, now: float) -> None:
        if not self.buffer:
            return
        for child in self.pool.idle():
            if not self.buffer:
                break
            item, deadline = self.buffer.popleft()
            if deadline <= now:
                self._report_failure(item, "its lease ran out before a process was free to run it")
                continue
            try:
                self.pool.assign(child, item, deadline)
            except OSError:  # the child died just now; its pipe will report EOF
                child.task, child.deadline = item, deadline

    # -- to the broker ------------------------------------------------------------------------

    def _send(self, kind: Kind, body: dict[str, Any], corr: int = 0) -> bool:
        try:
            self.sock.send(encode(kind, corr, body), zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False

    def _credit_due(self) -> int:
        """Slots to grant now: capacity less what we hold and what the broker may still send."""
        if not self.registered or self.mode is not Mode.RUNNING:
            return 0
        held = len(self.pool.busy()) + len(self.buffer)
        return max(0, self.config.procs + self.prefetch.depth() - held - self.outstanding)

    def _flush(self) -> None:
        """Send outcomes (fenced by their tokens, so even before a welcome) with the credit due."""
        credit = self._credit_due()
        for batch in batches(self.outbox):
            corr = next(self._corr)
            self.unacked[corr] = (Kind.RESULTS, batch)
            self._send(Kind.RESULTS, {"results": batch, "credit": credit}, corr)
            self.outstanding += credit
            credit = 0
        self.outbox = []
        if credit:
            self._send(Kind.CREDIT, {"n": credit})
            self.outstanding += credit

    def _send_release(self, items: list[dict[str, Any]]) -> None:
        corr = next(self._corr)
        self.unacked[corr] = (Kind.RELEASE, items)
        self._send(Kind.RELEASE, {"leases": items}, corr)

    def _release_buffer(self) -> None:
        """Hand back tasks that were delivered but not started: they use no try."""
        if self.buffer:
            self._send_release([{"id": item["id"], "token": item["token"]} for item, _ in self.buffer])
            self.buffer.clear()

    def _keep_in_touch(self, now: float) -> None:
        """HELLO until welcomed; heartbeats; a broker silent for 3 beats gets a new HELLO."""
        if self.registered and now - self._last_heard > 3 * self.heartbeat_s:
            log.warning("broker silent for %.1fs: registering again", now - self._last_heard)
            self.registered = False
            self._next_hello = 0.0
        if not self.registered and now >= self._next_hello and self.mode is not Mode.STOPPING:
            self._hello_corr = next(self._corr)
            self._send(Kind.HELLO, self._hello_body(), self._hello_corr)
            self._next_hello = now + self.heartbeat_s
        if self.registered and now >= self._next_beat:
            self._send(Kind.HEARTBEAT, {})
            self._next_beat = now + self.heartbeat_s

    def _hello_body(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "procs": self.config.procs,
            "queues": list(self.config.queues),
        }

    # -- signals and shutdown -----------------------------------------------------------------

    def _take_signals(self, now: float) -> None:
        try:
            while self._wake_r.recv(64):
                pass
        except BlockingIOError:
            pass
        while self._signals:
            sig = self._signals.pop(0)
            if sig == signal.SIGTSTP:
                self._pause("SIGTSTP: no new tasks")
            elif self.mode is Mode.STOPPING:
                self._stop_deadline = now  # a second signal: stop waiting
            else:
                self._pause(f"{signal.Signals(sig).name}: shutting down")
                self.mode = Mode.STOPPING
                self._stop_deadline = now + self.config.shutdown_timeout_s
        if self._stop_deadline is not None and now >= self._stop_deadline:
            self._abandon_running()

    def _pause(self, why: str) -> None:
        log.info("%s; running tasks finish", why)
        if self.mode is Mode.RUNNING:
            self.mode = Mode.PAUSED
            self.outstanding = 0
            self._send(Kind.PAUSE, {})
        self._release_buffer()

    def _abandon_running(self) -> None:
        """Shutdown timeout: kill what still runs and hand those tasks back without using a try."""
        items = []
        for child in self.pool.busy():
            assert child.task is not None
            items.append({"id": child.task["id"], "token": child.task["token"]})
            self.pool.kill(child)
            self._drop_child(child)
        if items:
            log.warning("shutdown timeout: %d running tasks handed back", len(items))
            self._send_release(items)

    def _leave(self) -> None:
        """Wait (briefly) until the broker has taken every outcome and release, then say BYE."""
        deadline = time.monotonic() + self.config.ack_timeout_s
        while (self.unacked or self.outbox) and time.monotonic() < deadline:
            self._flush()
            if self.sock.poll(100, zmq.POLLIN):
                self._read_broker(time.monotonic())
            if not self.registered:
                self._keep_in_touch(time.monotonic())
        if self.unacked or self.outbox:
            log.error("broker did not confirm %d messages before exit; their tasks will run again", len(self.unacked))
        self._send(Kind.BYE, {})
