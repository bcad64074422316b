"""The broker's state machine: one `step` applies a batch of messages in one transaction.

Nothing is answered before the commit: replies and deliveries are collected during the step and
returned for sending only once the transaction is on disk (group commit). In memory it keeps
only what is bounded by workers and leases, never by queue depth: the tasks stay in SQLite.

Each part of that memory has an owner that keeps its invariants (`QueueBook`, `LeaseTable`,
`Registry`, `Waiters`, the schedules) and journals its changes, so a request, a phase or a whole
step that the database undoes is undone in memory too, exactly, without reading anything back.
"""

from __future__ import annotations

import logging
import math
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ajq.broker import admin_api, client_api, cron, lifecycle, worker_api
from ajq.broker.access import Peer
from ajq.broker.client_api import task_info
from ajq.broker.config import DEFAULT_QUEUE_LIMITS, NEW_QUEUE_LIMITS, BrokerConfig
from ajq.broker.dispatch import dispatch
from ajq.broker.errors import DispatchFailed
from ajq.broker.events import Events
from ajq.broker.journal import Journal, JournaledDict
from ajq.broker.leases import Lease, LeaseTable
from ajq.broker.queues import QueueBook
from ajq.broker.registry import Registry
from ajq.broker.retention import Retention
from ajq.broker.store import QueueRow, ScheduleRow, Store
from ajq.broker.waiters import Waiters
from ajq.protocol import ErrorCode, Frame, Kind, Limits, ProtocolError, decode, encode
from ajq.protocol.clock import Now
from ajq.protocol.codec import peek_corr
from ajq.protocol.defaults import DEFAULT_QUEUE
from ajq.protocol.messages import check_body

log = logging.getLogger("ajq.broker")

# Requests that write nothing to the database: a step that fails answers them again from the disk.
READS = frozenset({
    Kind.GET, Kind.WAIT, Kind.QUEUE_LIST, Kind.QUEUE_INFO, Kind.WORKERS, Kind.INFO, Kind.TASK_LIST,
    Kind.CRON_LIST, Kind.CRON_GET, Kind.HEARTBEAT,
})  # fmt: skip
HOLD_S = 1.0  # a failed phase of the step waits this long before it is tried again
STEP_ROWS = 2  # a step takes messages until their batches hold this many full batches of items
Handler = Callable[["Broker", bytes, Frame, Now], None]
HANDLERS: dict[Kind, Handler] = {**client_api.HANDLERS, **admin_api.HANDLERS, **worker_api.HANDLERS}


class Broker:
    """Queues, leases, workers, waiters and schedules; see `step`."""

    def __init__(self, store: Store, config: BrokerConfig, now: Now) -> None:
        self.store = store
        self.config = config
        self.limits = config.limits  # ajbroker --max-frame-mb, --max-payload-kb, --max-batch
        self.started = now.wall
        self.events_endpoint = config.events_endpoint  # the server puts the bound address here
        self.journal = Journal()
        self.queues = QueueBook(self.journal)
        self.leases = LeaseTable(self.journal)
        self.workers = Registry(self.journal)
        self.waiters = Waiters(self.journal)
        self.schedules: JournaledDict[str, ScheduleRow] = JournaledDict(self.journal)
        self.events = Events()
        self._peers: Mapping[bytes, Peer] = {}
        self._writing = False  # the step's write transaction is open
        self._replies: list[tuple[bytes, int, Kind, dict[str, Any]]] = []
        self.deliveries: dict[bytes, list[dict[str, Any]]] = {}
        self.finished: list[str] = []
        self.unsent: list[tuple[bytes, list[str]]] = []  # deliveries the socket refused: hand back
        self.held: dict[str, float] = {}  # a phase of the step that failed -> mono time to try it again
        self.dispatch_more = False  # dispatch stopped at its per-step bound: step again at once
        self.held_queues: dict[str, float] = {}  # a queue whose dispatch failed -> mono time to try again
        self._next_heartbeat = now.mono
        self.retention = Retention()
        self.next_trim = now.mono
        self._timers_at = (-math.inf, -math.inf)  # (monotonic, wall) when tick next has work: at once
        self._load(now)
        if DEFAULT_QUEUE not in self.queues:
            self.store.begin()
            self.queue(DEFAULT_QUEUE, now)
            self.store.commit()
        self.journal.commit()

    def _load(self, now: Now) -> None:
        """The in-memory view of the database, at start (never again: rollbacks use the journal)."""
        self.queues.load(self.store.queues(), self.store.state_counts())
        leases = []
        for t in self.store.active_tasks():
            expires = now.mono + max(0.0, t.lease_expires - now.wall)
            ident = (t.worker or "").encode()
            leases.append(Lease(t.id, t.queue, t.type, t.token, t.tries, expires, ident, t.unique_key))
        self.leases.load(leases, self.store.cancels())
        self.schedules.load({s.name: s for s in self.store.schedules()})

    # -- the step -----------------------------------------------------------------------------

    def step(self, inbox: Iterable[list[bytes]], now: Now, peers: Mapping[bytes, Peer] | None = None) -> list[Outgoing]:
        """Apply the messages of `inbox` ([routing id, frames...] each) and the timers due; `peers`
        says who sent each, by routing id, when the broker admits CURVE keys.

        It takes messages until their batches hold STEP_ROWS full batches of items: the rest stay in
        `inbox` for the next step, so one step writes a bounded number of rows and stays short."""
        self._replies = []
        self.deliveries = {}
        self.finished = []
        self._peers = peers or {}
        messages, taken = iter(inbox), []
        self._writing = False  # a step of reads only (heartbeats, GETs) opens no transaction
        try:
            rows = 0
            for msg in messages:
                taken.append(msg)
                rows += self.handle(msg[0], msg[1:], now)
                if rows >= STEP_ROWS * self.limits.max_batch:
                    break
            timers, unsent = self._timers_due(now), bool(self.unsent)  # most steps have neither
            dispatching = self._dispatch_wanted()
            if unsent or timers or dispatching:
                self._write()
            self._hand_back_unsent(now)
            if timers:
                self._guarded("timers", self.tick, now)
            if timers or unsent:  # they may have made queues ready
                dispatching = self._dispatch_wanted()
            if dispatching:
                self._guarded("dispatch", self._dispatch, now)
            else:
                self.dispatch_more = False
            self._answer_waiters()
            if self._writing:
                self.store.commit()
        except Exception as exc:  # the database failed (BEGIN, a write, COMMIT), or a bug outside a guard
            self.store.rollback()
            self.journal.rollback()
            taken.extend(messages)  # what this step would have read is answered now, not failed again one by one
            out = self._after_rollback(exc, taken, now)
        else:
            out = self._outgoing(now)
        finally:
            self.journal.commit()  # memory now agrees with the disk, whichever way the step went
        self._plan_timers()
        return out

    def _write(self) -> None:
        """Open the step's write transaction, once (BEGIN IMMEDIATE), when something may write."""
        if not self._writing:
            self.store.begin()
            self._writing = True

    def _dispatch_wanted(self) -> bool:
        """Dispatch has something to look at: a held queue whose hold may end, or a queue that may
        hold ready tasks served by a worker with credit."""
        dirty = self.queues.dirty
        if self.held_queues:
            return True
        return bool(dirty) and any(q in dirty for w in self.workers.with_credit() for q in w.queues)

    def _dispatch(self, now: Now) -> None:
        """Dispatch, without the queues whose dispatch failed within HOLD_S (dirty again after)."""
        for queue, until in list(self.held_queues.items()):
            if until > now.mono:
                self.queues.drained(queue)
            else:
                del self.held_queues[queue]
                self.queues.ready_now(queue)
        try:
            self.dispatch_more = dispatch(self, now, self.limits.max_batch)
        except DispatchFailed as exc:
            self.held_queues[exc.queue] = now.mono + HOLD_S
            raise

    def _guarded(self, name: str, phase: Callable[[Now], None], now: Now) -> None:
        """Run one phase of the step alone: if it fails (a bug, a row it cannot read, a write the full
        disk refused), its changes are undone, it is logged, and it waits HOLD_S while the requests
        go on. Only a database error that ended the whole transaction fails the whole step."""
        if self.held.get(name, 0.0) > now.mono:
            return
        mark = self._mark()
        try:
            with self.store.savepoint():
                phase(now)
        except sqlite3.Error as exc:
            if not self.store.db.in_transaction:
                raise  # SQLite ended the whole transaction: the whole step rolls back
            log.error("the broker's %s could not be written and was undone; tried again in %gs: %s", name, HOLD_S, exc)
            self.held[name] = now.mono + HOLD_S
            self._undo(mark)
        except Exception as exc:
            cause = exc.__cause__ if isinstance(exc, DispatchFailed) and exc.__cause__ else exc
            what = str(exc) if isinstance(exc, DispatchFailed) else f"the broker's {name}"
            log.error("%s failed and was undone; tried again in %gs", what, HOLD_S, exc_info=cause)
            if not isinstance(exc, DispatchFailed):
                self.held[name] = now.mono + HOLD_S
            self._undo(mark)

    def _mark(self) -> tuple[int, int, int]:
        """Where memory stands before a request or a phase: journal, events, ended tasks (a plain
        tuple: this runs three times a step)."""
        return self.journal.mark(), len(self.events.pending), len(self.finished)

    def _undo(self, mark: tuple[int, int, int]) -> None:
        """Memory back to `mark`, as the database is after its savepoint was rolled back: the
        journal played back, and the events, ended tasks and deliveries made since dropped.
        Only dispatch delivers, and it is marked before it has, so every delivery is since the mark."""
        journal, events, finished = mark
        self.journal.rollback(journal)
        self.events.drop_since(events)
        del self.finished[finished:]
        self.deliveries = {}

    def handle(self, ident: bytes, frames: list[bytes], now: Now) -> int:
        """Apply one message; return its weight for the step's bound (the items of its batch, or 1)."""
        try:
            frame = decode(frames, self.limits, validate=False)
        except ProtocolError as exc:
            self.reply_error(ident, peek_corr(frames[-1]) if frames else 0, exc)
            return 1
        handler = HANDLERS.get(frame.kind)
        if handler is None:
            msg = f"the broker does not accept '{frame.kind.value}' messages; it only sends them"
            self.reply_error(ident, frame.corr, ProtocolError(ErrorCode.UNKNOWN_KIND, msg))
            return 1
        self._apply(handler, ident, frame, now)
        return _weight(frame)

    def _apply(self, handler: Handler, ident: bytes, frame: Frame, now: Now) -> None:
        if frame.kind not in READS:
            self._write()
        mark, in_transaction = self._mark(), self.store.db.in_transaction
        try:
            check_body(frame.kind, frame.body, self.limits)
            if frame.kind in READS or (frame.kind is Kind.SUBMIT and client_api.one_statement(self, frame.body)):
                handler(self, ident, frame, now)  # nothing, or one statement, written: no savepoint needed
            else:
                with self.store.savepoint():
                    handler(self, ident, frame, now)
        except ProtocolError as exc:  # refused: its savepoint is undone, and so is all it changed in memory
            self._undo(mark)
            self.reply_error(ident, frame.corr, exc)
        except sqlite3.Error as exc:
            if in_transaction and not self.store.db.in_transaction:
                raise  # SQLite ended the whole transaction (I/O error, ...): the whole step rolls back
            # A write of this request failed (a full disk): its savepoint is undone, the rest goes on,
            # so reads and the requests that fit are still answered. (Or a read outside any transaction.)
            log.error("request %s could not be written, it alone was undone: %s", frame.kind.value, exc)
            self._undo(mark)
            self.reply_error(ident, frame.corr, ProtocolError(ErrorCode.INTERNAL, _write_failure(exc)))
        except Exception as exc:  # a bug must cost one request, never the broker
            log.exception("request %s failed; its changes were rolled back", frame.kind.value)
            self._undo(mark)
            msg = f"the broker failed on this {frame.kind.value} ({type(exc).__name__}: {exc}); nothing was changed"
            self.reply_error(ident, frame.corr, ProtocolError(ErrorCode.INTERNAL, msg))

    def _plan_timers(self) -> None:
        """When `tick` next has something to do, (monotonic, wall), worked out once after each step.
        A step's requests only add timers due later (a WAIT's end, a lease, a retry's time), but for a
        departure found at its start, which then waits one turn (wake_in says 0)."""
        mono = [self.next_trim]
        timers = (self.leases.next_expiry(), self.waiters.next_expiry(), self.workers.next_departure())
        mono += [t for t in timers if t is not None]
        seen = self.workers.least_recently_seen()
        if seen is not None:
            mono.append(seen + self.config.silent_after_s)  # a worker silent past the bound is lost
        wall = [t for t in (self.queues.next_wake(), cron.next_due(self)) if t is not None]
        self._timers_at = (min(mono), min(wall, default=math.inf))

    def _timers_due(self, now: Now) -> bool:
        """Some timer of `tick` has something to do now."""
        return now.mono >= self._timers_at[0] or now.wall >= self._timers_at[1]

    def tick(self, now: Now) -> None:
        """Timers: lost workers, expired leases, timed-out waits, due tasks, schedules, retention."""
        for lost in self.workers.lost(now.mono, self.config.silent_after_s):
            self._hand_back(lost.ident, f"worker {lost.worker_id} on {lost.host} was lost (no heartbeat)", now)
        for ident, why in self.workers.departed_due(now.mono):
            self._hand_back(ident, why, now)
        for lease in self.leases.due(now.mono):
            run_time = self.queues[lease.queue].max_run_time_s if lease.queue in self.queues else 0
            worker = lease.worker.decode(errors="replace")
            error = f"lease expired: no answer from worker {worker!r} within max_run_time ({run_time:g}s)"
            lifecycle.fail_unanswered(self, lease, error, now)
        for task_id, w in self.waiters.expired(now.mono):
            msg = f"task {task_id} did not end within the wait; call wait() again or get() its state"
            self.reply_error(w.ident, w.corr, ProtocolError(ErrorCode.TIMEOUT, msg))
        self.queues.wake_due(now.wall)
        cron.fire_due(self, now)
        if now.mono >= self.next_trim:
            self.next_trim = now.mono + self.retention.trim(self, now)

    def wake_in(self, now: Now) -> float:
        """Seconds until the next timer is due (0: work to do now)."""
        if self.dispatch_more or self.unsent:  # unsent: deliveries to release, now
            return 0.0
        mono, wall = self._timers_at
        times = [self._next_heartbeat - now.mono, mono - now.mono, wall - now.wall]
        times += [until - now.mono for until in (*self.held.values(), *self.held_queues.values()) if until > now.mono]
        return max(0.0, min(times))

    # -- queues and tokens --------------------------------------------------------------------

    def queue(self, name: str, now: Now) -> QueueRow:
        """The queue called `name`, created with the defaults if it does not exist yet."""
        q = self.queues.get(name)
        if q is None:
            if len(self.queues) >= self.config.max_queues:
                raise ProtocolError(
                    ErrorCode.TOO_LARGE,
                    f"the broker has {len(self.queues)} queues, its limit: queue {name!r} was not created; "
                    "delete unused ones (`ajc queue rm NAME`) or start ajbroker with a higher --max-queues",
                )
            d = DEFAULT_QUEUE_LIMITS if name == DEFAULT_QUEUE else NEW_QUEUE_LIMITS
            q = QueueRow(
                name, d.max_concurrent, d.max_run_time_s, d.max_tries, False, now.wall,
                d.retention_s, d.dead_max, d.dead_retention_s, d.backoff_s,
            )  # fmt: skip
            self.store.put_queue(q)
            self.queues.put(q)
        return q

    def peer(self, ident: bytes) -> Peer | None:
        """Who sent the message being handled from `ident`, as CURVE proved it (None: no keys)."""
        return self._peers.get(ident)

    def new_token(self) -> int:
        """A random 63-bit lease token: unguessable, so only the lease holder can answer for it."""
        return secrets.randbits(63)

    # -- replies ------------------------------------------------------------------------------

    def reply(self, ident: bytes, corr: int, data: Any) -> None:
        self._replies.append((ident, corr, Kind.REPLY, {"data": data}))

    def reply_error(self, ident: bytes, corr: int, exc: ProtocolError) -> None:
        self._replies.append((ident, corr, Kind.ERROR, {"code": int(exc.code), "message": exc.message}))

    def send(self, ident: bytes, kind: Kind, body: dict[str, Any]) -> None:
        self._replies.append((ident, 0, kind, body))

    def _answer_waiters(self) -> None:
        for task_id in self.finished:
            waiters = self.waiters.pop(task_id)
            if not waiters:
                continue
            row = self.store.get_task(task_id)
            for w in waiters:
                if row is None:
                    gone = ProtocolError(ErrorCode.UNKNOWN_TASK, f"task {task_id} was deleted before it ended")
                    self.reply_error(w.ident, w.corr, gone)
                else:
                    self.reply(w.ident, w.corr, task_info(row))

    def _outgoing(self, now: Now) -> list[Outgoing]:
        out = [Outgoing(ident, encode(kind, corr, body)) for ident, corr, kind, body in self._replies]
        for ident, tasks in self.deliveries.items():
            for chunk in _chunks(tasks, self.limits):
                out.append(Outgoing(ident, encode(Kind.DELIVER, 0, {"tasks": chunk}), [t["id"] for t in chunk]))
        if now.mono >= self._next_heartbeat:
            self._next_heartbeat = now.mono + self.config.heartbeat_s
            beat = encode(Kind.HEARTBEAT, 0, {})
            # Only to workers not heard within the interval: one heard has had an answer to its own
            # HEARTBEAT, so it knows we are alive; a silent one is probed (a send that fails: gone).
            quiet = now.mono - self.config.heartbeat_s
            out.extend(Outgoing(w.ident, beat) for w in self.workers if w.last_seen <= quiet)
        return out

    def _after_rollback(self, exc: Exception, inbox: list[list[bytes]], now: Now) -> list[Outgoing]:
        """Nothing of this step is on disk: every request that writes gets INTERNAL, deliveries are
        undone, and the reads (and worker heartbeats, the lease bound's proof of contact) are
        answered again from what is on disk, so a full disk never makes the broker unreadable."""
        if isinstance(exc, sqlite3.Error):
            log.error("the database refused this batch, nothing of it was applied: %s", exc)
            msg = _write_failure(exc)
        else:
            log.exception("the broker failed on this batch, nothing of it was applied")
            msg = f"the broker failed ({type(exc).__name__}: {exc}); nothing was changed: retry"
        internal = {"code": int(ErrorCode.INTERNAL), "message": msg}
        reads = [m for m in inbox if self._is_read(m)]
        again = {(m[0], peek_corr(m[-1])) for m in reads}
        done = [r for r in self._replies if (r[0], r[1]) not in again]
        replies = [r for r in done if r[2] is Kind.ERROR]
        replies += [(ident, corr, Kind.ERROR, internal) for ident, corr, kind, _ in done if kind is Kind.REPLY]
        answered = {(r[0], r[1]) for r in replies} | again
        for msg_frames in inbox:
            ident, corr = msg_frames[0], peek_corr(msg_frames[-1])
            if corr and (ident, corr) not in answered:
                replies.append((ident, corr, Kind.ERROR, internal))
        self._replies = replies
        self.deliveries = {}  # their credit was given back by the journal
        self.events.take()
        self.queues.all_dirty()  # the hints are not journaled: read every queue again
        self.retention.forget()
        for m in reads:
            self.handle(m[0], m[1:], now)
        return self._outgoing(now)

    def _is_read(self, msg: list[bytes]) -> bool:
        try:
            return decode(msg[1:], self.limits, validate=False).kind in READS
        except ProtocolError:
            return False

    def undeliverable(self, out: Outgoing) -> None:
        """A peer we could not send to (its connection is gone): settled at the next step."""
        self.unsent.append((out.ident, out.task_ids or []))

    def _hand_back_unsent(self, now: Now) -> None:
        """Deliveries that never left are released (no try used); a worker we can no longer reach
        is dropped, and the tasks it was running go back once the lease bound has passed since its
        last message (its children may run until then), unless it registers again first."""
        if not self.unsent:
            return
        self.journal.record(setattr, self, "unsent", self.unsent)
        for ident, task_ids in self.unsent:
            for task_id in task_ids:
                lease = self.leases.get(task_id)
                if lease is not None and lease.worker == ident:
                    lifecycle.release(self, lease, now)
            worker = self.workers.get(ident)
            if worker is not None:
                why = f"worker {worker.worker_id} on {worker.host} is unreachable"
                self.workers.depart(ident, why, self.config.silent_after_s)
        self.unsent = []

    def _hand_back(self, ident: bytes, why: str, now: Now) -> None:
        """A worker is gone for good: each of its tasks has failed a try and goes back now."""
        self.workers.remove(ident)
        leases = self.leases.of_worker(ident)
        if leases:
            log.warning("%s: %d of its tasks go back", why, len(leases))
        for lease in leases:
            lifecycle.fail_unanswered(self, lease, why, now)


def _write_failure(exc: sqlite3.Error) -> str:
    """What a request refused because the database could not write is told, and what to do."""
    fix = "free disk space, then retry" if "full" in str(exc) else "retry"
    return f"the broker could not write to its database ({exc}); nothing was changed: {fix}"


def _weight(frame: Frame) -> int:
    body = frame.body
    if isinstance(body, dict):
        for field in ("tasks", "results", "leases"):
            items = body.get(field)
            if isinstance(items, list):
                return max(1, len(items))
    return 1


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to send after the commit; `task_ids` when it is a DELIVER."""

    ident: bytes
    data: bytes
    task_ids: list[str] | None = None


def _chunks(tasks: list[dict[str, Any]], limits: Limits) -> list[list[dict[str, Any]]]:
    """Split one worker's deliveries into frames within the batch and frame limits."""
    budget = limits.max_frame_bytes // 2
    out: list[list[dict[str, Any]]] = [[]]
    size = 0
    for t in tasks:
        n = len(t["payload"]) + sum(len(v) for v in t.get("dependency_results", {}).values()) + 256
        if out[-1] and (len(out[-1]) >= limits.max_batch or size + n > budget):
            out.append([])
            size = 0
        out[-1].append(t)
        size += n
    return out
