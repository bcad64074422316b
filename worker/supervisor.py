"""The supervisor: one poll loop over the broker's DEALER socket and every child's pipe.

It asks the broker for work by credit (free slots, prefetch included), hands tasks to idle
children, kills a child whose task runs past its lease (a true hard timeout) or past the lease bound
(lease_bound.py), renews a lease when a handler calls task.extend, kills a cancelled task's child,
replaces dead and worn-out children, and reports outcomes in batches. Signal handlers only set flags;
the loop acts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections import deque
from enum import Enum
from typing import Any

import zmq
from nacl.signing import VerifyKey

from ajq.protocol import ErrorCode, Kind
from ajq.protocol.signing import SigningKeyError, load_verify_key
from ajq.worker.config import WorkerConfig
from ajq.worker.credit import Prefetch, batches
from ajq.worker.errors import BrokerRefused, ChildDied, LeaseRanOut, WorkerConfigError
from ajq.worker.extensions import Extensions
from ajq.worker.hooks import HookRunner
from ajq.worker.lease_bound import LEAD_S, Held, LeaseBound
from ajq.worker.link import BrokerLink
from ajq.worker.outcomes import Outcomes
from ajq.worker.pool import Child, ErrorHandlerRuns, Extend, Pool
from ajq.worker.resend import Resend
from ajq.worker.retry import RetryPolicyProvider
from ajq.worker.router import Router

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
        self.pool = Pool(
            config.procs, router, config.max_tasks_per_child, config.max_memory_per_child_mb, _verify_key(config)
        )
        self.hooks = HookRunner()
        self.outcomes = Outcomes(router, retry, self.hooks)
        self.resend = Resend()  # what the broker could not write, until its back-off has passed
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
        self.mode = Mode.RUNNING
        self.buffer: deque[Held] = deque()  # delivered, not started yet
        self.link = BrokerLink(config, self.worker_id)
        self.bound = LeaseBound(self.link)
        self.extensions = Extensions()  # EXTENDs awaiting the broker's answer
        self.outstanding = 0  # credit granted to the broker and not yet used by a delivery
        self.prefetch = Prefetch(config.procs, config.prefetch)
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
        self.sock = self.link.connect()
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
            self.link.close()

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
        self._report_dead(now)
        self.pool.reap_retired()
        self.hooks.check(now)
        self._enforce_deadlines(now)
        self._start_tasks(now)
        self.link.keep_in_touch(now, may_register=self.mode is not Mode.STOPPING)
        for kind, items in self.resend.due(now):
            self._requeue(kind, items)
        self._flush()

    def _timeout_ms(self, now: float) -> int:
        """Until the next timer: a heartbeat (or HELLO), a child's deadline, the shutdown deadline."""
        times = [self.link.next_timer(now, may_register=self.mode is not Mode.STOPPING)]
        if (resend_at := self.resend.next_time()) is not None:
            times.append(resend_at)
        times += [self.bound.supervisor_stop(c.deadline, c.fence) for c in self.pool.busy() if c.deadline is not None]
        if self._stop_deadline is not None and self.pool.busy():
            times.append(self._stop_deadline)
        if self.pool.dying():
            times.append(now + 0.005)  # its exit is a moment away: look again soon
        return max(0, int((min(times) - now) * 1000) + 1)

    def _finished(self) -> bool:
        """Stopping, and nothing left running, buffered or dying unreported."""
        return self.mode is Mode.STOPPING and not self.pool.busy() and not self.buffer and not self.pool.dying()

    # -- broker messages ----------------------------------------------------------------------

    def _read_broker(self, now: float) -> None:
        """Act on every message waiting on the socket (deliveries, replies, errors, cancels)."""
        for frame in self.link.receive(now):
            if frame.kind is Kind.DELIVER:
                self._accept(frame.body["tasks"], now)
            elif frame.kind is Kind.REPLY:
                self._on_reply(frame.corr, frame.body["data"])
            elif frame.kind is Kind.ERROR:
                self._on_error(frame.corr, frame.body, now)
            elif frame.kind is Kind.CANCEL:
                self._cancel(frame.body)

    def _accept(self, tasks: list[dict[str, Any]], now: float) -> None:
        """Buffer delivered tasks with their hard-timeout deadline; hand them back if not running."""
        wall = time.time()
        self.outstanding = max(0, self.outstanding - len(tasks))
        for item in tasks:
            item["deadline_wall"] = wall + item["run_time_s"]
            self.buffer.append(self.bound.hold(item, now))
        if self.mode is not Mode.RUNNING:
            self._release_buffer()

    def _on_reply(self, corr: int, data: Any) -> None:
        """The welcome, an answer to RESULTS/RELEASE (log refusals) or to an EXTEND."""
        if corr == self.link.hello_corr:
            self._welcome(data)
            return
        if self.link.confirmed(corr):
            self._refresh_kill_times()
            return
        if corr in self.extensions.waiting:
            self.extensions.granted(corr, data, self.pool.busy(), self.bound)
            self._refresh_kill_times()
            return
        sent = self.link.unacked.pop(corr, None)
        if sent is not None:
            self.resend.accepted()
            for task_id, _code, message in data["refused"]:
                log.warning("broker refused the outcome of task %s: %s", task_id, message)

    def _on_error(self, corr: int, body: dict[str, Any], now: float) -> None:
        """Register again, resend refused outcomes, or log (a refused EXTEND included)."""
        code = body.get("code")
        extension = self.extensions.refused(corr, body.get("message"))
        if corr and corr == self.link.hello_corr and code != ErrorCode.INTERNAL:
            raise BrokerRefused(f"the broker refused to register this worker: {body.get('message')}")
        if code == ErrorCode.NOT_REGISTERED:
            self.link.forget_registration()
        elif extension:
            return
        elif corr in self.link.unacked:
            kind, items = self.link.unacked.pop(corr)
            if code == ErrorCode.INTERNAL:  # the broker could not write: nothing applied, send again later
                wait = self.resend.refused(kind, items, now)
                log.error("broker could not take %d outcomes (%s): resending in %.1fs", len(items),
                          body.get("message"), wait)  # fmt: skip
            else:  # refused for good: sending the same thing again cannot help
                log.error("broker refused %d outcomes for good: %s", len(items), body.get("message"))
        else:
            log.error("broker error: %s", body.get("message"))

    def _welcome(self, data: dict[str, Any]) -> None:
        """Registered: adopt the heartbeat, resend what was not acknowledged, start from zero credit."""
        for kind, items in self.link.welcome(data):
            self._requeue(kind, items)
        self.outcomes.limits = self.link.limits
        self.extensions.waiting.clear()  # their answers will not come: the next task.extend renews the lease
        self.outstanding = 0  # a new registration starts with no credit
        self._drop_lost_leases(set(data.get("running", ())))
        self._refresh_kill_times()

    def _drop_lost_leases(self, running: set[str]) -> None:
        """Tasks held here that the broker no longer counts as ours (it gave them back while we were
        out of touch) stop now: another worker may run them. The broker ended those leases already."""
        lost = [h for h in self.buffer if h.item["id"] not in running]
        for held in lost:
            self.buffer.remove(held)
        for child in self.pool.busy():
            if child.task is not None and child.task["id"] not in running:
                lost.append(Held(child.task, 0.0, 0.0))
                self.pool.kill(child)
                self._drop_child(child)
                self._replace(child)
        if lost:
            log.warning("the broker gave back %d of our tasks while we were out of touch: stopped them", len(lost))

    def _refresh_kill_times(self) -> None:
        """Contact was confirmed (or a lease extended): each running child may live longer."""
        for child in self.pool.busy():
            child.kill_at.value = self.bound.child_stop(child.fence)

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
            self._child_died(child, now)
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

    def _child_died(self, child: Child, now: float) -> None:
        """Its pipe closed: replace it; its task fails once its exit is collected (_report_dead)."""
        fd = child.fd
        self.pool.died(child, now)
        self.poller.unregister(fd)
        self._replace(child)

    def _report_dead(self, now: float) -> None:
        """Fail the tasks of children that died, saying how each ended."""
        for item, handled, cause in self.pool.dead(now):
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
        corr = self.link.next_corr()
        body = self.extensions.request(child, msg, corr, now)
        if body is not None:
            self.link.send(Kind.EXTEND, body, corr)

    def _cancel(self, body: dict[str, Any]) -> None:
        """CANCEL {id, token}: drop the lease if buffered, SIGKILL its child if running; else ignore."""
        task_id, token = body["id"], body.get("token")
        for held in self.buffer:
            if held.item["id"] == task_id and held.item["token"] == token:
                self.buffer.remove(held)
                self.outcomes.cancelled(held.item)
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
        """Hard timeout or lease bound: SIGKILL a child still running then, replace it, fail the try."""
        for child in self.pool.busy():
            if child.deadline is None or child.task is None:
                continue
            if self.bound.supervisor_stop(child.deadline, child.fence) <= now:
                item, handled = child.task, child.error_handled
                error = self.bound.why(item, child.deadline, now)
                self.pool.kill(child)
                self._drop_child(child)
                self._replace(child)
                self.outcomes.failed(item, error, handled=handled)

    def _drop_child(self, child: Child) -> None:
        """Forget a killed child (reaped later, never waited for) and stop polling its pipe."""
        fd = child.fd
        self.pool.retire(child)
        self.poller.unregister(fd)

    def _replace(self, child: Child) -> None:
        """Fork a new child in place of one that is gone (not while stopping)."""
        if self.mode is Mode.STOPPING:
            return
        new = self.pool.spawn()
        self.poller.register(new.fd, zmq.POLLIN)

    def _start_tasks(self, now: float) -> None:
        """Give buffered tasks to idle children, in delivery order; fail those whose lease ran out.
        Out of touch with the broker, nothing starts: the tasks wait for the next welcome."""
        if not self.buffer or not self.link.in_contact(now + LEAD_S):
            return
        for child in self.pool.idle():
            if not self.buffer:
                break
            held = self.buffer.popleft()
            if self.bound.supervisor_stop(held.deadline, held.fence) <= now:
                error = LeaseRanOut("its lease ran out before a process was free to run it")
                self.outcomes.failed(held.item, error, handled=False)
                continue
            try:
                self.pool.assign(child, held.item, held.deadline, held.fence, self.bound.child_stop(held.fence))
            except OSError:  # the child died just now; its pipe will report EOF
                child.task, child.deadline, child.fence = held.item, held.deadline, held.fence

    # -- to the broker ------------------------------------------------------------------------

    def _credit_due(self) -> int:
        """Slots to grant now: capacity less what we hold and what the broker may still send."""
        if not self.link.registered or self.mode is not Mode.RUNNING:
            return 0
        held = len(self.pool.busy()) + len(self.buffer)
        return max(0, self.config.procs + self.prefetch.depth() - held - self.outstanding)

    def _flush(self) -> None:
        """Send outcomes (fenced by their tokens, so even before a welcome) with the credit due."""
        credit = self._credit_due()
        for batch in batches(self.outcomes.take(), self.link.limits):
            self.link.send_tracked(Kind.RESULTS, {"results": batch, "credit": credit}, batch)
            self.outstanding += credit
            credit = 0
        if credit:
            self.link.send(Kind.CREDIT, {"n": credit})
            self.outstanding += credit

    def _send_release(self, items: list[dict[str, Any]]) -> None:
        """RELEASE leases (no try used), remembered until the broker answers."""
        for batch in batches(items, self.link.limits):
            self.link.send_tracked(Kind.RELEASE, {"leases": batch}, batch)

    def _release_buffer(self) -> None:
        """Hand back tasks that were delivered but not started: they use no try."""
        if self.buffer:
            self._send_release([{"id": h.item["id"], "token": h.item["token"]} for h in self.buffer])
            self.buffer.clear()

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
            self.link.send(Kind.PAUSE, {})
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
        while (self.link.unacked or self.outcomes.pending or self.resend or not self.hooks.idle()) and (
            time.monotonic() < deadline
        ):
            for kind, items in self.resend.due(time.monotonic()):
                self._requeue(kind, items)
            self._flush()
            if self.sock.poll(100, zmq.POLLIN):
                self._read_broker(time.monotonic())
        if self.link.unacked or self.outcomes.pending or self.resend:
            n = len(self.link.unacked)
            log.error("broker did not confirm %d messages before exit; their tasks will run again", n)
        self.link.send(Kind.BYE, {})


def _verify_key(config: WorkerConfig) -> VerifyKey | None:
    """The key tasks must be signed with (--verify-key), or WorkerConfigError naming the file."""
    if config.verify_key is None:
        return None
    try:
        return load_verify_key(config.verify_key)
    except SigningKeyError as exc:
        raise WorkerConfigError(str(exc)) from None
