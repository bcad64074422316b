"""The synchronous client: one DEALER socket, one request at a time, a timeout on every call."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

import zmq

from ajq.client import calls
from ajq.client.errors import ClientError, RequestTimeout, from_reply
from ajq.client.models import CronInfo, QueueInfo, Submitted, TaskInfo, WorkerInfo
from ajq.protocol import DEFAULT_QUEUE, Kind, Limits, ProtocolError, decode, defaults, encode
from ajq.protocol.limits import HARD_LIMITS

T = TypeVar("T")


class Client:
    """Submit tasks and read their state. Use as a context manager, or call close().

    A call that times out raises RequestTimeout and resets the socket, so the request is not sent
    later; it may still have been applied. Give tasks an id to make a resubmit safe.
    """

    def __init__(
        self, endpoint: str | None = None, *, timeout: float = 10.0, curve_secret: str | None = None,
        curve_server: str | None = None, signing_key: str | None = None,
    ) -> None:  # fmt: skip
        """`curve_secret` (our NAME.key_secret) and `curve_server` (the broker's .key), or
        $AJQ_CURVE_SECRET and $AJQ_CURVE_SERVER, connect over CURVE to a broker that needs keys.
        `signing_key` (a NAME.sign file) signs every task, for workers started with --verify-key."""
        self.endpoint = defaults.endpoint(endpoint)
        self.timeout = calls.timeout_s("timeout", timeout)
        self.curve = calls.curve_keys(curve_secret, curve_server)
        self._signing = calls.signing_key(signing_key)
        self._ctx = zmq.Context()
        self._corr = itertools.count(1)
        self._sock = self._connect()
        self.limits: Limits | None = None  # the broker's, learned by the first submit_many

    def _connect(self) -> zmq.Socket[bytes]:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        if self.curve is not None:
            self.curve.apply(sock)
        try:
            sock.connect(self.endpoint)
        except zmq.ZMQError as exc:
            sock.close(0)
            self._ctx.term()
            raise ClientError(
                f"cannot use broker endpoint {self.endpoint!r} ({exc}): write it as tcp://host:port"
            ) from None
        return sock

    def close(self) -> None:
        self._sock.close(0)
        self._ctx.term()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    # -- the API (AsyncClient has each of these calls, with the same arguments) -------------------

    def submit(
        self,
        task_type: str,
        payload: Any = None,
        *,
        queue: str = DEFAULT_QUEUE,
        task_id: str | None = None,
        deadline: calls.When | None = None,
        run_at: datetime | float | None = None,
        delay: calls.When | None = None,
        unique_for: timedelta | float | None = None,
        depends_on: calls.Parents = None,
        load_results: bool = False,
        timeout: float | None = None,
    ) -> Submitted:
        """Submit one task; when this returns, the task is on the broker's disk.

        delay (seconds or a timedelta from now) or run_at (an aware datetime) schedule it; deadline
        (the same forms as delay, or an aware datetime) expires it if not started by then;
        unique_for refuses the same type and payload in this queue for that long (or until it
        ends); depends_on (ids or Submitted) waits for those tasks to complete, and load_results
        hands the handler their results.
        """
        opts = calls.Options(task_id, deadline, run_at, delay, unique_for, depends_on, load_results)
        return self._run(calls.signed(calls.submit(task_type, payload, queue, opts), self._signing), timeout)

    def submit_many(
        self, tasks: Iterable[Any], *, queue: str = DEFAULT_QUEUE, timeout: float | None = None
    ) -> list[str]:
        """Submit many tasks in batches within the broker's limits; returns their ids in order. Each
        batch commits whole."""
        ids: list[str] = []
        items = calls.checked_first(tasks)
        if items is None:
            return ids
        with calls.learning(self):
            for call in calls.submit_batches(queue, items, self._broker_limits(timeout)):
                batch: list[str] = self._run(calls.signed(call, self._signing), timeout)
                ids += batch
        return ids

    def _broker_limits(self, timeout: float | None) -> Limits:
        """The broker's frame, payload and batch limits, asked once (INFO) and kept."""
        if self.limits is None:
            info = self._run(calls.info(), timeout)
            self.limits = Limits.announced(info)
        return self.limits

    def get(self, task_id: str, *, timeout: float | None = None) -> TaskInfo:
        return self._run(calls.get(task_id), timeout)

    def wait(self, task_id: str, timeout: float = 30.0) -> TaskInfo:
        """Block until the task ends (complete, terminated, expired or dead); WaitTimeout if not."""
        return self._run(calls.wait(task_id, timeout), None)

    def cancel(self, task_id: str, *, wait: float = 5.0, timeout: float | None = None) -> TaskInfo:
        """Cancel a task: a waiting one ends `terminated` at once; a running one has its process
        killed. Waits up to `wait` seconds for the end (0: return the state now)."""
        info = self._run(calls.cancel(task_id), timeout)
        return self.wait(task_id, timeout=wait) if wait > 0 and not info.done else info

    def tasks(
        self,
        *,
        queue: str | None = None,
        state: str | None = None,
        task_type: str | None = None,
        limit: int = 50,
        before: int | None = None,
        timeout: float | None = None,
    ) -> list[TaskInfo]:
        """Tasks newest first, filtered; for the next page pass before=<last one's seq>."""
        return self._run(calls.tasks(queue, state, task_type, limit, before), timeout)

    def retry(self, task_id: str, *, timeout: float | None = None) -> TaskInfo:
        """Send an ended task (dead, expired, terminated, complete, unreachable) back to run."""
        return self._run(calls.retry(task_id), timeout)

    def delete(self, task_id: str, *, timeout: float | None = None) -> None:
        """Delete a task that is not running."""
        self._run(calls.delete(task_id), timeout)

    def queues(self, *, timeout: float | None = None) -> list[QueueInfo]:
        return self._run(calls.queues(), timeout)

    def queue_info(self, name: str, *, timeout: float | None = None) -> QueueInfo:
        return self._run(calls.queue_info(name), timeout)

    def configure_queue(
        self,
        name: str,
        *,
        max_concurrent: int | None = None,
        max_run_time: float | None = None,
        max_tries: int | None = None,
        retention: float | None = None,
        dead_max: int | None = None,
        dead_retention: float | None = None,
        backoff: float | None = None,
        timeout: float | None = None,
    ) -> QueueInfo:
        """Create or change a queue. Times in seconds; max_tries -1 means unlimited. backoff: how long
        a try that ended with no answer (its worker lost, its lease run out) waits, doubled per try."""
        call = calls.configure_queue(
            name, max_concurrent=max_concurrent, max_run_time=max_run_time, max_tries=max_tries,
            retention=retention, dead_max=dead_max, dead_retention=dead_retention, backoff=backoff,
        )  # fmt: skip
        return self._run(call, timeout)

    def pause_queue(self, name: str, *, timeout: float | None = None) -> QueueInfo:
        """Stop giving out the queue's tasks; submits are still taken and running tasks finish."""
        return self._run(calls.pause_queue(name), timeout)

    def resume_queue(self, name: str, *, timeout: float | None = None) -> QueueInfo:
        return self._run(calls.resume_queue(name), timeout)

    def purge_queue(self, name: str, *, timeout: float | None = None) -> int:
        """Delete the queue's waiting tasks; returns how many."""
        return self._run(calls.purge_queue(name), timeout)

    def delete_queue(self, name: str, *, force: bool = False, timeout: float | None = None) -> None:
        """Delete a queue and all its tasks; refused while tasks run unless force (they are killed)."""
        self._run(calls.delete_queue(name, force), timeout)

    def workers(self, *, timeout: float | None = None) -> list[WorkerInfo]:
        """Live workers: id, host, pid, processes, queues, running task ids, since when."""
        return self._run(calls.workers(), timeout)

    def info(self, *, timeout: float | None = None) -> dict[str, Any]:
        """The broker: pid, uptime, database, events endpoint, totals."""
        return self._run(calls.info(), timeout)

    def add_cron(
        self, name: str, cron: str, task_type: str, payload: Any = None, *, queue: str = DEFAULT_QUEUE,
        timeout: float | None = None,
    ) -> CronInfo:  # fmt: skip
        """Create or replace a periodic task: the broker submits `task_type` on every `cron` match (UTC)."""
        return self._run(calls.add_cron(name, cron, task_type, payload, queue), timeout)

    def crons(self, *, timeout: float | None = None) -> list[CronInfo]:
        return self._run(calls.crons(), timeout)

    def cron(self, name: str, *, timeout: float | None = None) -> CronInfo:
        return self._run(calls.cron(name), timeout)

    def delete_cron(self, name: str, *, timeout: float | None = None) -> None:
        self._run(calls.delete_cron(name), timeout)

    # -- transport ----------------------------------------------------------------------------

    def _run(self, call: calls.Call[T], timeout: float | None) -> T:
        return call.read(self.call(call.kind, call.body, call.timeout if call.timeout is not None else timeout))

    def call(self, kind: Kind, body: dict[str, Any], timeout: float | None = None) -> Any:
        """Send one request and return the reply's data; raise the broker's error as ours."""
        corr = next(self._corr)
        limit = self.timeout if timeout is None else calls.timeout_s("timeout", timeout)
        deadline = time.monotonic() + limit
        self._sock.send(encode(kind, corr, body))
        while True:
            raw = self._receive(deadline - time.monotonic())
            if raw is None:
                if time.monotonic() < deadline:
                    continue
                self._sock.close(0)
                self._sock = self._connect()
                raise RequestTimeout(
                    f"no answer from the broker at {self.endpoint} within {limit:g}s: is ajbroker running there?"
                )
            try:
                frame = decode(raw, HARD_LIMITS, validate=False)
            except ProtocolError as exc:
                raise ClientError(f"the broker sent a message this client cannot read: {exc}") from None
            if frame.corr != corr:
                continue  # the late answer to an earlier request that timed out
            if frame.kind is Kind.ERROR:
                raise from_reply(frame.body.get("code", 0), frame.body.get("message", ""))
            return frame.body["data"]

    def _receive(self, left_s: float) -> list[bytes] | None:
        """The next message within `left_s`, or None. A blocking recv with a timeout: one call, where
        poll() then recv() cost a Poller object and a second call for every reply."""
        if left_s <= 0:
            return None
        self._sock.rcvtimeo = int(left_s * 1000) + 1
        try:
            return self._sock.recv_multipart()
        except zmq.Again:
            return None
