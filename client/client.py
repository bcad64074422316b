"""The synchronous client: one DEALER socket, one request at a time, a timeout on every call."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from datetime import datetime
from types import TracebackType
from typing import Any

import zmq

from client import calls
from client.errors import ClientError, RequestTimeout, from_reply
from client.models import QueueInfo, Submitted, TaskInfo, WorkerInfo
from protocol import Kind, ProtocolError, decode, encode

WAIT_MARGIN_S = 5.0  # extra time for the broker's own answer to a WAIT that ran out


class Client:
    """Submit tasks and read their state. Use as a context manager, or call close().

    A call that times out raises RequestTimeout and resets the socket, so the request is not sent
    later; it may still have been applied. Give tasks an id to make a resubmit safe.
    """

    def __init__(self, endpoint: str | None = None, *, timeout: float = 10.0) -> None:
        self.endpoint = calls.endpoint(endpoint)
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
        queue: str = calls.DEFAULT_QUEUE,
        task_id: str | None = None,
        deadline: datetime | float | None = None,
        timeout: float | None = None,
    ) -> Submitted:
        """Submit one task; when this returns, the task is on the broker's disk."""
        item = calls.task_item(task_type, payload, task_id, deadline)
        data = self.call(Kind.SUBMIT, {"queue": queue, "tasks": [item]}, timeout)
        return Submitted(data["ids"][0], task_type, queue)

    def submit_many(
        self, tasks: Iterable[Any], *, queue: str = calls.DEFAULT_QUEUE, timeout: float | None = None
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
        timeout: float | None = None,
    ) -> QueueInfo:
        """Create or change a queue. max_run_time in seconds; max_tries -1 means unlimited."""
        body = calls.configure_body(name, max_concurrent, max_run_time, max_tries)
        return QueueInfo.from_wire(self.call(Kind.QUEUE_CONFIGURE, body, timeout))

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
