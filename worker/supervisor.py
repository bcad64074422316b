"""The supervisor: one poll loop over the broker's DEALER socket and every child's pipe.

It asks the broker for work by credit (free slots, prefetch included), hands tasks to idle
children, kills a child whose task runs past its lease (a true hard timeout), renews a lease when a
handler calls task.extend, kills a cancelled task's child, replaces dead and worn-out children, and
reports outcomes in batches. Signal handlers only set flags; the loop acts.
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
from worker.config import WorkerConfig
from worker.credit import Prefetch, batches
from worker.errors import ChildDied, HardTimeout, LeaseRanOut
from worker.extensions import Extensions
from worker.outcomes import Outcomes
from worker.pool import Child, ErrorHandlerRuns, Extend, Pool
from worker.retry import RetryPolicyProvider
from worker.router import Router

log = logging.getLogger("ajq.worker")


class Mode(Enum):
    """What the supervisor does with new tasks."""

    RUNNING = "running"
    PAUSED = "paused"  # SIGTSTP: no new tasks; running ones finish
    STOPPING = "stopping"  # SIGTERM/SIGINT: finish or hand back, then leave


class Supervisor:
    """The worker process: owns the broker connection, the pool and the tasks held."""

    def __init__(self, config: WorkerConfig, router: Router, retry: RetryPolicyProvider) -> None:
        self.config = config
        self.pool = Pool(config.procs, router, config.max_tasks_per_child, config.max_memory_per_child_mb)
        self.outcomes = Outcomes(router, retry)
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
        self.mode = Mode.RUNNING
        self.buffer: deque[tuple[dict[str, Any], float]] = deque()  # (delivery, deadline) not started yet
        self.unacked: dict[int, tuple[Kind, list[dict[str, Any]]]] = {}  # corr -> what awaits a REPLY
        self.extensions = Extensions()  # EXTENDs awaiting the broker's answer
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
        """SIGTERM/SIGINT stop, SIGTSTP pauses; the handler only records the signal and wakes the loop."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGTSTP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        """Record the signal and wake the loop; nothing else happens in a handler."""
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
        children = list(self.pool.children.items())  # before a CANCEL can replace one on a reused fd
        self._take_signals(now)
        if ready.get(self.sock):
            self._read_broker(now)
        for fd, child in children:
            if ready.get(fd) and self.pool.children.get(fd) is child:
                self._read_child(child, now)
        self.pool.reap_retired()
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
        """Stopping, and nothing left running or buffered."""
        return self.mode is Mode.STOPPING and not self.pool.busy() and not self.buffer

    # -- broker messages ----------------------------------------------------------------------

    def _read_broker(self, now: float) -> None:
        """Act on every message waiting on the socket (deliveries, replies, errors, cancels)."""
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
            elif frame.kind is Kind.CANCEL:
                self._cancel(frame.body)

    def _accept(self, tasks: list[dict[str, Any]], now: float) -> None:
        """Buffer delivered tasks with their hard-timeout deadline; hand them back if not running."""
        wall = time.time()
        self.outstanding = max(0, self.outstanding - len(tasks))
        for item in tasks:
            item["deadline_wall"] = wall + item["run_time_s"]
            self.buffer.append((item, now + item["run_time_s"]))
        if self.mode is not Mode.RUNNING:
            self._release_buffer()

    def _on_reply(self, corr: int, data: Any) -> None:
        """The welcome, an answer to RESULTS/RELEASE (log refusals) or to an EXTEND."""
        if corr == self._hello_corr:
            self._welcome(data)
            return
        if corr in self.extensions.waiting:
            self.extensions.granted(corr, data, self.pool.busy())
            return
        sent = self.unacked.pop(corr, None)
        if sent is not None:
            for task_id, _code, message in data["refused"]:
                log.warning("broker refused the outcome of task %s: %s", task_id, message)

    def _on_error(self, corr: int, body: dict[str, Any]) -> None:
        """Register again, resend refused outcomes, or log (a refused EXTEND included)."""
        code = body.get("code")
        extension = self.extensions.refused(corr, body.get("message"))
        if code == ErrorCode.NOT_REGISTERED:
            self.registered = False
            self._next_hello = 0.0
        elif extension:
            return
        elif corr in self.unacked:
            kind, items = self.unacked.pop(corr)
            if code == ErrorCode.INTERNAL:  # the broker could not write: nothing applied, send again
                log.error("broker could not take %d outcomes (%s): will resend", len(items), body.get("message"))
                self._requeue(kind, items)
            else:  # refused for good: sending the same thing again cannot help
                log.error("broker refused %d outcomes for good: %s", len(items), body.get("message"))
        else:
            log.error("broker error: %s", body.get("message"))

    def _welcome(self, data: dict[str, Any]) -> None:
        """Registered: adopt the heartbeat, resend what was not acknowledged, start from zero credit."""
        self.registered = True
        self.heartbeat_s = float(data["heartbeat_s"])
        log.info("registered with the broker at %s", self.config.broker)
        for kind, items in list(self.unacked.values()):
            self._requeue(kind, items)  # the broker may have missed them: fenced, so resending is safe
        self.unacked.clear()
        self.extensions.waiting.clear()  # their answers will not come: the next task.extend renews the lease
        self.outstanding = 0  # a new registration starts with no credit

    def _requeue(self, kind: Kind, items: list[dict[str, Any]]) -> None:
        """Send again items the broker did not confirm (fenced by tokens, so safe)."""
        if kind is Kind.RESULTS:
            self.outcomes.pending.extend(items)
        else:
            self._send_release(items)

    # -- children -----------------------------------------------------------------------------

    def _read_child(self, child: Child, now: float) -> None:
        """One message from a child: its outcome, a task.extend, the error-handler marker, or EOF."""
        msg = self.pool.read(child)
        item = child.task
        if msg is None:
            self._child_died(child)
        elif isinstance(msg, Extend):
            self._extend(child, msg, now)
        elif isinstance(msg, ErrorHandlerRuns):
            child.error_handled = item is not None and item["token"] == msg.token
        elif item is not None:
            self.prefetch.observe(time.monotonic() - child.started)
            child.task = child.deadline = None
            child.done += 1
            self.outcomes.from_child(item, msg)
            self._recycle_if_worn(child)

    def _child_died(self, child: Child) -> None:
        """Its pipe closed: reap and replace it, and fail the task it was running."""
        item, handled = child.task, child.error_handled
        fd = child.fd
        cause = self.pool.reap(child)
        self.poller.unregister(fd)
        self._replace(child)
        if item is not None:
            self.outcomes.failed(item, ChildDied(f"the process running the task died: {cause}"), handled=handled)

    def _recycle_if_worn(self, child: Child) -> None:
        """Between tasks: replace a child past --max-tasks-per-child or --max-memory-per-child."""
        why = self.pool.worn_out(child)
        if why is None:
            return
        log.info("replacing process %d: %s", child.pid, why)
        self.poller.unregister(child.fd)
        self.pool.retire(child)
        self._replace(child)

    def _extend(self, child: Child, msg: Extend, now: float) -> None:
        """task.extend: move the child's hard timeout now and renew the lease with the broker."""
        corr = next(self._corr)
        body = self.extensions.request(child, msg, corr, now)
        if body is not None:
            self._send(Kind.EXTEND, body, corr)

    def _cancel(self, body: dict[str, Any]) -> None:
        """CANCEL {id, token}: drop the lease if buffered, SIGKILL its child if running; else ignore."""
        task_id, token = body["id"], body.get("token")
        for entry in self.buffer:
            if entry[0]["id"] == task_id and entry[0]["token"] == token:
                self.buffer.remove(entry)
                self.outcomes.cancelled(entry[0])
                return
        for child in self.pool.busy():
            item = child.task
            if item is not None and item["id"] == task_id and item["token"] == token:
                self.pool.kill(child)
                self._drop_child(child)
                self._replace(child)
                self.outcomes.cancelled(item)
                return
        log.debug("cancel for task %s: not held here (token %s), ignored", task_id, token)

    def _enforce_deadlines(self, now: float) -> None:
        """Hard timeout: SIGKILL a child still running at its deadline, replace it, fail the try."""
        for child in list(self.pool.children.values()):
            if child.deadline is not None and child.deadline <= now and child.task is not None:
                item, handled = child.task, child.error_handled
                self.pool.kill(child)
                self._drop_child(child)
                self._replace(child)
                self.outcomes.failed(item, HardTimeout(_timeout_text(item)), handled=handled)

    def _drop_child(self, child: Child) -> None:
        """Reap a killed child and stop polling its pipe."""
        fd = child.fd
        self.pool.reap(child)
        self.poller.unregister(fd)

    def _replace(self, child: Child) -> None:
        """Fork a new child in place of one that is gone (not while stopping)."""
        if self.mode is Mode.STOPPING:
            return
        new = self.pool.spawn()
        self.poller.register(new.fd, zmq.POLLIN)

    def _start_tasks(self, now: float) -> None:
        """Give buffered tasks to idle children, in delivery order; fail those whose lease ran out."""
        if not self.buffer:
            return
        for child in self.pool.idle():
            if not self.buffer:
                break
            item, deadline = self.buffer.popleft()
            if deadline <= now:
                error = LeaseRanOut("its lease ran out before a process was free to run it")
                self.outcomes.failed(item, error, handled=False)
                continue
            try:
                self.pool.assign(child, item, deadline)
            except OSError:  # the child died just now; its pipe will report EOF
                child.task, child.deadline = item, deadline

    # -- to the broker ------------------------------------------------------------------------

    def _send(self, kind: Kind, body: dict[str, Any], corr: int = 0) -> bool:
        """Send without blocking; False if the socket's queue is full (the message is dropped)."""
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
        for batch in batches(self.outcomes.take()):
            corr = next(self._corr)
            self.unacked[corr] = (Kind.RESULTS, batch)
            self._send(Kind.RESULTS, {"results": batch, "credit": credit}, corr)
            self.outstanding += credit
            credit = 0
        if credit:
            self._send(Kind.CREDIT, {"n": credit})
            self.outstanding += credit

    def _send_release(self, items: list[dict[str, Any]]) -> None:
        """RELEASE leases (no try used), remembered until the broker answers."""
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
        """Who we are and what we serve: queues with their weights, strict priority or not."""
        return {
            "worker_id": self.worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "procs": self.config.procs,
            "queues": list(self.config.queues),
            "weights": list(self.config.weights),
            "strict": self.config.strict,
        }

    # -- signals and shutdown -----------------------------------------------------------------

    def _take_signals(self, now: float) -> None:
        """Act on the signals recorded since the last loop: pause, stop, or stop waiting."""
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
        """No new tasks: PAUSE the broker's credit and hand back the buffer."""
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
        while (self.unacked or self.outcomes.pending) and time.monotonic() < deadline:
            self._flush()
            if self.sock.poll(100, zmq.POLLIN):
                self._read_broker(time.monotonic())
            if not self.registered:
                self._keep_in_touch(time.monotonic())
        if self.unacked or self.outcomes.pending:
            log.error("broker did not confirm %d messages before exit; their tasks will run again", len(self.unacked))
        self._send(Kind.BYE, {})


def _timeout_text(item: dict[str, Any]) -> str:
    """The hard-timeout error, naming the limit the handler ran past."""
    if "extended_s" in item:
        limit = f"its last task.extend ({item['extended_s']:g}s)"
    else:
        limit = f"max_run_time ({item['run_time_s']:g}s)"
    return f"hard timeout: the handler ran past {limit}; its process was killed"
