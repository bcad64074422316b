"""The supervisor: one poll loop over the broker's DEALER socket and every child's pipe.

It asks the broker for work by credit (free slots, prefetch included), hands tasks to idle
children, kills a child whose task runs past its lease (a true hard timeout) or past the lease bound
(lease_bound.py), renews a lease when a handler calls task.extend, kills a cancelled task's child,
replaces dead and worn-out children, and reports outcomes in batches (outbox.py). Signal handlers
only set flags; the loop acts (shutdown.py).

Time is injected. `loop(now, ready)` reads no clock: every time it needs is `now`, so a test moves
time and steps the loop by hand (tests/test_supervisor_clock.py). `run` reads the clock it was given
twice an iteration: before waiting (how long to wait, from the timers) and after (the step's `now`);
the shutdown drain, `leave`, reads it too. The children's own kill timers (watchdog.py) are the
kernel's, on the real monotonic clock: the backstop for when the supervisor cannot act.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import zmq
from nacl.signing import VerifyKey

from ajq.protocol import ErrorCode, Kind
from ajq.protocol.clock import Clock, Now, SystemClock
from ajq.protocol.signing import SigningKeyError, load_verify_key
from ajq.worker.buffer import Buffer
from ajq.worker.config import WorkerConfig
from ajq.worker.credit import Prefetch
from ajq.worker.errors import BrokerRefused, ChildDied, LeaseRanOut, WorkerConfigError
from ajq.worker.extensions import Extensions
from ajq.worker.hooks import HookRunner
from ajq.worker.lease_bound import LEAD_S, LeaseBound
from ajq.worker.link import BrokerLink
from ajq.worker.outbox import Outbox
from ajq.worker.outcomes import Outcomes
from ajq.worker.pool import Child, ErrorHandlerRuns, Extend, Pool
from ajq.worker.retry import RetryPolicyProvider
from ajq.worker.router import Router
from ajq.worker.shutdown import Shutdown

log = logging.getLogger("ajq.worker")

Ready = dict[Any, int]  # what the poller found readable: the socket, or a pipe's or the wake fd -> events


class Supervisor:
    """The worker process: owns the broker connection, the pool and the tasks held."""

    def __init__(
        self, config: WorkerConfig, router: Router, retry: RetryPolicyProvider, *, clock: Clock | None = None
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()  # read by run and leave only
        self.poller = zmq.Poller()  # the socket, the wake-up fd, and the children's pipes (the pool's to keep)
        self.pool = Pool(
            config.procs, router, config.max_tasks_per_child, config.max_memory_per_child_mb, _verify_key(config),
            self.poller,
        )  # fmt: skip
        self.hooks = HookRunner(self.clock)
        self.outcomes = Outcomes(router, retry, self.hooks)
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
        self.shutdown = Shutdown(config.shutdown_timeout_s)
        self.link = BrokerLink(config, self.worker_id)
        self.bound = LeaseBound(self.link)
        self.buffer = Buffer(self.bound)  # delivered, not started yet
        self.outbox = Outbox(self.link, self.outcomes)
        self.extensions = Extensions()  # EXTENDs awaiting the broker's answer
        self.prefetch = Prefetch(config.procs, config.prefetch)

    # -- set-up, the run, and the end ---------------------------------------------------------

    def install_signals(self) -> None:
        """SIGTERM/SIGINT stop, SIGTSTP pauses: the handlers record the signal and wake the loop."""
        self.shutdown.install()

    def start(self) -> None:
        """Fork the pool (before any ZeroMQ context exists), connect, and poll the socket too."""
        self.pool.start()
        self.sock = self.link.connect()
        self.poller.register(self.sock, zmq.POLLIN)
        self.poller.register(self.shutdown.fd, zmq.POLLIN)
        log.info("worker %s: %d processes, queues %s", self.worker_id, self.config.procs, ",".join(self.config.queues))

    def run(self) -> None:
        """Start, loop until stopped, leave. The clock is read here, not in the loop."""
        self.start()
        try:
            while not self.finished():
                ready = self.wait(self.clock.now())
                self.loop(self.clock.now(), ready)
            self.leave()
        finally:
            self.close()

    def close(self) -> None:
        """Kill and reap every child; close the socket and the wake-up pair."""
        self.pool.stop()
        self.link.close()
        self.shutdown.close()

    # -- the loop -----------------------------------------------------------------------------

    def wait(self, now: Now) -> Ready:
        """Block until the socket, a pipe or a signal is readable, or the next timer as of `now`."""
        return self.poll(self._timeout_ms(now.mono))

    def poll(self, timeout_ms: int) -> Ready:
        """What is readable within `timeout_ms`: the one blocking call of an iteration."""
        return dict(self.poller.poll(timeout_ms))

    def loop(self, now: Now, ready: Ready) -> None:
        """One iteration at `now`: act on what `ready` found and on every timer due, then send one batch."""
        mono = now.mono
        children = list(self.pool.children.items())  # before a CANCEL can replace one on a reused fd
        self._take_signals(mono)
        if ready.get(self.sock):
            self._read_broker(now)
        for fd, child in children:
            if ready.get(fd) and self.pool.children.get(fd) is child:
                self._read_child(child, now)
        self._report_dead(mono)
        self.pool.reap_retired()
        self.hooks.check(mono)
        self._enforce_deadlines(mono)
        self._start_tasks(mono)
        self.link.keep_in_touch(mono, may_register=not self.shutdown.stopping)
        self.outbox.resend_due(mono)
        self._flush()

    def finished(self) -> bool:
        """Stopping, and nothing left running, buffered or dying unreported."""
        return self.shutdown.stopping and not self.pool.busy() and not self.buffer and not self.pool.dying()

    def _timeout_ms(self, now: float) -> int:
        """Until the next timer: a heartbeat (or HELLO), a resend, a child's deadline, the shutdown's."""
        times = [self.link.next_timer(now, may_register=not self.shutdown.stopping)]
        if (resend_at := self.outbox.next_time()) is not None:
            times.append(resend_at)
        times += [self.bound.supervisor_stop(c.deadline, c.fence) for c in self.pool.busy() if c.deadline is not None]
        if self.shutdown.stop_at is not None and self.pool.busy():
            times.append(self.shutdown.stop_at)
        if self.pool.dying():
            times.append(now + 0.005)  # its exit is a moment away: look again soon
        return max(0, int((min(times) - now) * 1000) + 1)

    # -- broker messages ----------------------------------------------------------------------

    def _read_broker(self, now: Now) -> None:
        """Act on every message waiting on the socket (deliveries, replies, errors, cancels)."""
        for frame in self.link.receive(now.mono):
            if frame.kind is Kind.DELIVER:
                self._accept(frame.body["tasks"], now)
            elif frame.kind is Kind.REPLY:
                self._on_reply(frame.corr, frame.body["data"])
            elif frame.kind is Kind.ERROR:
                self._on_error(frame.corr, frame.body, now.mono)
            elif frame.kind is Kind.CANCEL:
                self._cancel(frame.body)

    def _accept(self, tasks: list[dict[str, Any]], now: Now) -> None:
        """Buffer delivered tasks with their hard-timeout deadline; hand them back if not running."""
        self.outbox.delivered(len(tasks))
        self.buffer.add(tasks, now)
        if not self.shutdown.running:
            self._release_buffer()

    def _on_reply(self, corr: int, data: Any) -> None:
        """The welcome, an answer to a heartbeat, to an EXTEND, or to RESULTS/RELEASE (outbox.py)."""
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
        self.outbox.answered(corr, data)

    def _on_error(self, corr: int, body: dict[str, Any], now: float) -> None:
        """Register again, resend refused outcomes, or log (a refused EXTEND included)."""
        code, message = body.get("code"), body.get("message")
        extension = self.extensions.refused(corr, message)
        if corr and corr == self.link.hello_corr and code != ErrorCode.INTERNAL:
            raise BrokerRefused(f"the broker refused to register this worker: {message}")
        if code == ErrorCode.NOT_REGISTERED:
            self.link.forget_registration()
        elif extension:
            return
        elif not self.outbox.refused(corr, code, message, now):
            log.error("broker error: %s", message)

    def _welcome(self, data: dict[str, Any]) -> None:
        """Registered: adopt the heartbeat, resend what was not acknowledged, start from zero credit."""
        self.link.welcome(data)
        self.outbox.welcome()
        self.outcomes.limits = self.link.limits
        self.extensions.waiting.clear()  # their answers will not come: the next task.extend renews the lease
        self._drop_lost_leases(set(data.get("running", ())))
        self._refresh_kill_times()

    def _drop_lost_leases(self, running: set[str]) -> None:
        """Tasks held here that the broker no longer counts as ours (it gave them back while we were
        out of touch) stop now: another worker may run them. The broker ended those leases already."""
        lost = self.buffer.keep_only(running)
        for child in self.pool.busy():
            if child.task is not None and child.task["id"] not in running:
                lost += 1
                self._kill(child)
        if lost:
            log.warning("the broker gave back %d of our tasks while we were out of touch: stopped them", lost)

    def _refresh_kill_times(self) -> None:
        """Contact was confirmed (or a lease extended): each running child may live longer."""
        for child in self.pool.busy():
            child.kill_at.value = self.bound.child_stop(child.fence)

    def _cancel(self, body: dict[str, Any]) -> None:
        """CANCEL {id, token}: drop the lease if buffered, SIGKILL its child if running; else ignore."""
        task_id, token = body["id"], body.get("token")
        if (buffered := self.buffer.cancel(task_id, token)) is not None:
            self.outcomes.cancelled(buffered)
            return
        for child in self.pool.busy():
            item = child.task
            if item is not None and item["id"] == task_id and item["token"] == token:
                self._kill(child)
                self.outcomes.cancelled(item)
                return
        log.debug("cancel for task %s: not held here (token %s), ignored", task_id, token)

    # -- children -----------------------------------------------------------------------------

    def _read_child(self, child: Child, now: Now) -> None:
        """One message from a child: its outcome, a task.extend, the error-handler marker, or EOF."""
        msg = self.pool.read(child)
        item = child.task
        if msg is None:
            self._child_died(child, now.mono)
        elif isinstance(msg, Extend):
            self._extend(child, msg, now)
        elif isinstance(msg, ErrorHandlerRuns):
            child.error_handled = item is not None and item["token"] == msg.token
        elif item is not None:
            self.prefetch.observe(now.mono - child.started)
            child.task = child.deadline = None
            child.done += 1
            self.outcomes.from_child(item, msg)
            self._recycle_if_worn(child)

    def _child_died(self, child: Child, now: float) -> None:
        """Its pipe closed: replace it; its task fails once its exit is collected (_report_dead)."""
        self.pool.died(child, now)
        self._replace()

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
        self.pool.retire(child)
        self._replace()

    def _extend(self, child: Child, msg: Extend, now: Now) -> None:
        """task.extend: move the child's hard timeout now and renew the lease with the broker."""
        corr = self.link.next_corr()
        body = self.extensions.request(child, msg, corr, now)
        if body is not None:
            self.link.send(Kind.EXTEND, body, corr)

    def _enforce_deadlines(self, now: float) -> None:
        """Hard timeout or lease bound: SIGKILL a child still running then, replace it, fail the try."""
        for child, error in self.bound.overdue(self.pool.busy(), now):
            item, handled = child.task, child.error_handled
            assert item is not None
            self._kill(child)
            self.outcomes.failed(item, error, handled=handled)

    def _start_tasks(self, now: float) -> None:
        """Give buffered tasks to idle children, in delivery order; fail those whose lease ran out.
        Out of touch with the broker, nothing starts: the tasks wait for the next welcome."""
        if not self.buffer or not self.link.in_contact(now + LEAD_S):
            return
        for child in self.pool.idle():
            if not self.buffer:
                break
            held = self.buffer.next()
            if self.bound.supervisor_stop(held.deadline, held.fence) <= now:
                error = LeaseRanOut("its lease ran out before a process was free to run it")
                self.outcomes.failed(held.item, error, handled=False)
                continue
            try:
                self.pool.assign(child, held.item, held.deadline, held.fence, self.bound.child_stop(held.fence), now)
            except OSError:  # the child died just now; its pipe will report EOF
                child.task, child.deadline, child.fence = held.item, held.deadline, held.fence

    def _kill(self, child: Child) -> None:
        """SIGKILL a running child (a timeout, a cancel, a lost lease, the shutdown), forget it (it is
        reaped later, never waited for) and replace it."""
        self.pool.kill(child)
        self.pool.retire(child)
        self._replace()

    def _replace(self) -> None:
        """Fork a new child in place of one that is gone (not while stopping)."""
        if not self.shutdown.stopping:
            self.pool.spawn()

    # -- to the broker, signals and shutdown ----------------------------------------------------

    def _flush(self) -> None:
        """Send outcomes with the credit due: capacity less what we hold (none unless running)."""
        room = 0
        if self.shutdown.running:
            room = self.config.procs + self.prefetch.depth() - len(self.pool.busy()) - len(self.buffer)
        self.outbox.flush(room)

    def _release_buffer(self) -> None:
        """Hand back tasks that were delivered but not started: they use no try."""
        if self.buffer:
            self.outbox.release(self.buffer.hand_back())

    def _take_signals(self, now: float) -> None:
        """Act on the signals recorded since the last loop: pause (the broker told the first time),
        stop, or give up on the running tasks once the shutdown timeout has passed."""
        was_running = self.shutdown.running
        if self.shutdown.take(now):
            if was_running:
                self.outbox.pause()
            self._release_buffer()
        if self.shutdown.overdue(now):
            self._abandon_running()

    def _abandon_running(self) -> None:
        """Shutdown timeout: kill what still runs and hand those tasks back without using a try."""
        items = []
        for child in self.pool.busy():
            assert child.task is not None
            items.append({"id": child.task["id"], "token": child.task["token"]})
            self._kill(child)  # stopping: not replaced
        if items:
            log.warning("shutdown timeout: %d running tasks handed back", len(items))
            self.outbox.release(items)

    def leave(self) -> None:
        """Wait (at most ack_timeout_s on the clock given) until the broker has taken every outcome and
        release, then say BYE. Blocking: run calls it once the loop is over."""
        deadline = self.clock.now().mono + self.config.ack_timeout_s
        while not (self.outbox.settled() and self.hooks.idle()):
            now = self.clock.now()
            if now.mono >= deadline:
                break
            self.outbox.resend_due(now.mono)
            self._flush()
            if self.sock.poll(100, zmq.POLLIN):
                self._read_broker(self.clock.now())
        if not self.outbox.settled():
            n = len(self.outbox.unacked)
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
