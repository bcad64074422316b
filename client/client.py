"""The synchronous client: one DEALER socket, one request at a time, a timeout on every call."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from datetime import datetime
from types import TracebackType
from typing import Any

import zmq
from ajq.client import calls
from ajq.client.errors import ClientError, RequestTimeout, from_reply
from ajq.client.models import CronInfo, QueueInfo, Submitted, TaskInfo, WorkerInfo
from ajq.protocol import DEFAULT_QUEUE, Kind, ProtocolError, decode, defaults, encode, encode_value

WAIT_MARGIN_S = 5.0  # extra time for the broker's own answer to a WAIT that ran out


class Client:
    """Submit tasks and read their state. Use as a context manager, or call close().

    A call that times out raises RequestTimeout and resets the socket, so the request is not sent
    later; it may still have been applied. Give tasks an id to make a resubmit safe.
    """

    def __init__(self, endpoint: str | None = None, *, timeout: float = 10.0) -> None:
        self.endpoint = defaults.endpoint(endpoint)
        self.timeout = timeout
        self._ctx = zmq.Context()
        self._corr = itertools.count(1)
        self._sock = self._connect()

    def _connect(self) -> zmq.Socket[bytes]:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
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

    # -- the API ------------------------------------------------------------------------------

    def submit(
        self,
        task_type: str,
        payload: Any = None,
        *,
        queue: str = DEFAULT_QUEUE,
        task_id: str | None = None,
        deadline: datetime | float | None = None,
        run_at: datetime | float | None = None,
        delay: float | None = None,
        unique_for: float | None = None,
        depends_on: Iterable[str] = (),
        load_results: bool = False,
        timeout: float | None = None,
    ) -> Submitted:
        """Submit one task; when this returns, the task is on the broker's disk.

        run_at/delay schedule it; deadline expires it if not started by then; unique_for refuses
        the same type and payload in this queue for that many seconds (or until it ends);
        depends_on waits for those tasks to complete (load_results hands the handler their results).
        """
        opts = calls.Options(task_id, deadline, run_at, delay, unique_for, tuple(depends_on), load_results)
        item = calls.task_item(task_type, payload, opts)
        data = self.call(Kind.SUBMIT, {"queue": queue, "tasks": [item]}, timeout)
        return Submitted(data["ids"][0], task_type, queue)

    def submit_many(
        self, tasks: Iterable[Any], *, queue: str = DEFAULT_QUEUE, timeout: float | None = None
    ) -> list[str]:
        """Submit many tasks in batches; returns their ids in order. Each batch commits whole."""
        ids: list[str] = []
        for kind, body in calls.submit_batches(queue, calls.many_items(tasks)):
            ids.extend(self.call(kind, body, timeout)["ids"])
        return ids

    def get(self, task_id: str, *, timeout: float | None = None) -> TaskInfo:
        return TaskInfo.from_wire(self.call(Kind.GET, {"id": task_id}, timeout))

    def wait(self, task_id: str, timeout: float = 30.0) -> TaskInfo:
        """Block until the task ends (complete, terminated, expired or dead); WaitTimeout if not."""
        data = self.call(Kind.WAIT, {"id": task_id, "timeout_s": float(timeout)}, timeout + WAIT_MARGIN_S)
        return TaskInfo.from_wire(data)

    def queues(self, *, timeout: float | None = None) -> list[QueueInfo]:
        return [QueueInfo.from_wire(q) for q in self.call(Kind.QUEUE_LIST, {}, timeout)]

    def queue_info(self, name: str, *, timeout: float | None = None) -> QueueInfo:
        return QueueInfo.from_wire(self.call(Kind.QUEUE_INFO, {"name": name}, timeout))

    def workers(self, *, timeout: float | None = None) -> list[WorkerInfo]:
        """Live workers: id, host, pid, processes, queues, running task ids, since when."""
        return [WorkerInfo.from_wire(w) for w in self.call(Kind.WORKERS, {}, timeout)]

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
        timeout: float | None = None,
    ) -> QueueInfo:
        """Create or change a queue. Times in seconds; max_tries -1 means unlimited."""
        body = calls.configure_body(
            name, max_concurrent=max_concurrent, max_run_time=max_run_time, max_tries=max_tries,
            retention=retention, dead_max=dead_max, dead_retention=dead_retention,
        )  # fmt: skip
        return QueueInfo.from_wire(self.call(Kind.QUEUE_CONFIGURE, body, timeout))

    def pause_queue(self, name: str, *, timeout: float | None = None) -> QueueInfo:
        """Stop giving out the queue's tasks; submits are still taken and running tasks finish."""
        return QueueInfo.from_wire(self.call(Kind.QUEUE_PAUSE, {"name": name}, timeout))

    def resume_queue(self, name: str, *, timeout: float | None = None) -> QueueInfo:
        return QueueInfo.from_wire(self.call(Kind.QUEUE_RESUME, {"name": name}, timeout))

    def purge_queue(self, name: str, *, timeout: float | None = None) -> int:
        """Delete the queue's waiting tasks; returns how many."""
        return int(self.call(Kind.QUEUE_PURGE, {"name": name}, timeout)["purged"])

    def delete_queue(self, name: str, *, force: bool = False, timeout: float | None = None) -> None:
        """Delete a queue and all its tasks; refused while tasks run unless force (they are killed)."""
        self.call(Kind.QUEUE_DELETE, {"name": name, "force": force}, timeout)

    def cancel(self, task_id: str, *, wait: float = 5.0, timeout: float | None = None) -> TaskInfo:
        """Cancel a task: a waiting one ends `terminated` at once; a running one has its process
        killed. Waits up to `wait` seconds for the end (0: return the state now)."""
        info = TaskInfo.from_wire(self.call(Kind.CANCEL, {"id": task_id}, timeout))
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
        filters = {"queue": queue, "state": state, "type": task_type, "before": before}
        body: dict[str, Any] = {k: v for k, v in filters.items() if v is not None}
        body["limit"] = limit
        return [TaskInfo.from_wire(t) for t in self.call(Kind.TASK_LIST, body, timeout)]

    def retry(self, task_id: str, *, timeout: float | None = None) -> TaskInfo:
        """Send an ended task (dead, expired, terminated, complete, unreachable) back to run."""
        return TaskInfo.from_wire(self.call(Kind.TASK_RETRY, {"id": task_id}, timeout))

    def delete(self, task_id: str, *, timeout: float | None = None) -> None:
        """Delete a task that is not running."""
        self.call(Kind.TASK_DELETE, {"id": task_id}, timeout)

    def info(self, *, timeout: float | None = None) -> dict[str, Any]:
        """The broker: pid, uptime, database, events endpoint, totals."""
        data: dict[str, Any] = self.call(Kind.INFO, {}, timeout)
        return data

    def add_cron(
        self, name: str, cron: str, task_type: str, payload: Any = None, *, queue: str = DEFAULT_QUEUE,
        timeout: float | None = None,
    ) -> CronInfo:  # fmt: skip
        """Create or replace a periodic task: the broker submits `task_type` on every `cron` match (UTC)."""
        body = {"name": name, "cron": cron, "type": task_type, "payload": encode_value(payload), "queue": queue}
        return CronInfo.from_wire(self.call(Kind.CRON_ADD, body, timeout))

    def crons(self, *, timeout: float | None = None) -> list[CronInfo]:
        return [CronInfo.from_wire(c) for c in self.call(Kind.CRON_LIST, {}, timeout)]

    def cron(self, name: str, *, timeout: float | None = None) -> CronInfo:
        return CronInfo.from_wire(self.call(Kind.CRON_GET, {"name": name}, timeout))

    def delete_cron(self, name: str, *, timeout: float | None = None) -> None:
        self.call(Kind.CRON_DELETE, {"name": name}, timeout)

    # -- transport ----------------------------------------------------------------------------

    def call(self, kind: Kind, body: dict[str, Any], timeout: float | None = None) -> Any:
        """Send one request and return the reply's data; raise the broker's error as ours."""
        corr = next(self._corr)
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        self._sock.send(encode(kind, corr, body))
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self._sock.poll(int(left * 1000) + 1, zmq.POLLIN):
                if time.monotonic() < deadline:
                    continue
                self._sock.close(0)
                self._sock = self._connect()
                raise RequestTimeout(
                    f"no answer from the broker at {self.endpoint} within {limit:g}s: is ajbroker running there?"
                )
            try:
                frame = decode(self._sock.recv_multipart(), validate=False)
            except ProtocolError as exc:
                raise ClientError(f"the broker sent a message this client cannot read: {exc}") from None
            if frame.corr != corr:
                continue  # the late answer to an earlier request that timed out
            if frame.kind is Kind.ERROR:
                raise from_reply(frame.body.get("code", 0), frame.body.get("message", ""))
            return frame.body["data"]
