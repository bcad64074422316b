"""The asyncio client: the same calls as Client, awaitable, many in flight on one socket."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import zmq
import zmq.asyncio

from ajq.client import calls
from ajq.client.errors import ClientError, RequestTimeout, from_reply
from ajq.client.models import CronInfo, QueueInfo, Submitted, TaskInfo, WorkerInfo
from ajq.protocol import DEFAULT_QUEUE, Kind, Limits, ProtocolError, decode, defaults, encode
from ajq.protocol.limits import HARD_LIMITS

T = TypeVar("T")


class AsyncClient:
    """`async with AsyncClient(endpoint) as c: await c.submit(...)`; concurrent calls are fine."""

    def __init__(
        self, endpoint: str | None = None, *, timeout: float = 10.0, curve_secret: str | None = None,
        curve_server: str | None = None, signing_key: str | None = None,
    ) -> None:  # fmt: skip
        self.endpoint = defaults.endpoint(endpoint)
        self.timeout = calls.timeout_s("timeout", timeout)
        keys = calls.curve_keys(curve_secret, curve_server)
        self._signing = calls.signing_key(signing_key)
        self._ctx = zmq.asyncio.Context()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        if keys is not None:
            keys.apply(self._sock)
        try:
            self._sock.connect(self.endpoint)
        except zmq.ZMQError as exc:
            self._sock.close(0)
            self._ctx.term()
            raise ClientError(
                f"cannot use broker endpoint {self.endpoint!r} ({exc}): write it as tcp://host:port"
            ) from None
        self._corr = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._heard = 0.0  # monotonic: when the last message came
        self.limits: Limits | None = None  # the broker's, learned by the first submit_many

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        self._sock.close(0)
        self._ctx.term()

    # -- the API: Client's calls, with the same arguments ----------------------------------------

    async def submit(
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
        """Submit one task (see Client.submit); when this returns, the task is on the broker's disk."""
        opts = calls.Options(task_id, deadline, run_at, delay, unique_for, depends_on, load_results)
        return await self._run(calls.signed(calls.submit(task_type, payload, queue, opts), self._signing), timeout)

    async def submit_many(
        self, tasks: Iterable[Any], *, queue: str = DEFAULT_QUEUE, timeout: float | None = None
    ) -> list[str]:
        """Submit many tasks in batches within the broker's limits (see Client.submit_many)."""
        ids: list[str] = []
        items = calls.checked_first(tasks)
        if items is None:
            return ids
        with calls.learning(self):
            for call in calls.submit_batches(queue, items, await self._broker_limits(timeout)):
                batch: list[str] = await self._run(calls.signed(call, self._signing), timeout)
                ids += batch
        return ids

    async def _broker_limits(self, timeout: float | None) -> Limits:
        """The broker's frame, payload and batch limits, asked once (INFO) and kept."""
        if self.limits is None:
            info = await self._run(calls.info(), timeout)
            self.limits = Limits.announced(info)
        return self.limits

    async def get(self, task_id: str, *, timeout: float | None = None) -> TaskInfo:
        return await self._run(calls.get(task_id), timeout)

    async def wait(self, task_id: str, timeout: float = 30.0) -> TaskInfo:
        return await self._run(calls.wait(task_id, timeout), None)

    async def cancel(self, task_id: str, *, wait: float = 5.0, timeout: float | None = None) -> TaskInfo:
        """Cancel a task (see Client.cancel); waits up to `wait` seconds for its end."""
        info = await self._run(calls.cancel(task_id), timeout)
        return await self.wait(task_id, timeout=wait) if wait > 0 and not info.done else info

    async def tasks(
        self,
        *,
        queue: str | None = None,
        state: str | None = None,
        task_type: str | None = None,
        limit: int = 50,
        before: int | None = None,
        timeout: float | None = None,
    ) -> list[TaskInfo]:
        return await self._run(calls.tasks(queue, state, task_type, limit, before), timeout)

    async def retry(self, task_id: str, *, timeout: float | None = None) -> TaskInfo:
        return await self._run(calls.retry(task_id), timeout)

    async def delete(self, task_id: str, *, timeout: float | None = None) -> None:
        await self._run(calls.delete(task_id), timeout)

    async def queues(self, *, timeout: float | None = None) -> list[QueueInfo]:
        return await self._run(calls.queues(), timeout)

    async def queue_info(self, name: str, *, timeout: float | None = None) -> QueueInfo:
        return await self._run(calls.queue_info(name), timeout)

    async def configure_queue(
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
        call = calls.configure_queue(
            name, max_concurrent=max_concurrent, max_run_time=max_run_time, max_tries=max_tries,
            retention=retention, dead_max=dead_max, dead_retention=dead_retention, backoff=backoff,
        )  # fmt: skip
        return await self._run(call, timeout)

    async def pause_queue(self, name: str, *, timeout: float | None = None) -> QueueInfo:
        return await self._run(calls.pause_queue(name), timeout)

    async def resume_queue(self, name: str, *, timeout: float | None = None) -> QueueInfo:
        return await self._run(calls.resume_queue(name), timeout)

    async def purge_queue(self, name: str, *, timeout: float | None = None) -> int:
        return await self._run(calls.purge_queue(name), timeout)

    async def delete_queue(self, name: str, *, force: bool = False, timeout: float | None = None) -> None:
        await self._run(calls.delete_queue(name, force), timeout)

    async def workers(self, *, timeout: float | None = None) -> list[WorkerInfo]:
        return await self._run(calls.workers(), timeout)

    async def info(self, *, timeout: float | None = None) -> dict[str, Any]:
        return await self._run(calls.info(), timeout)

    async def add_cron(
        self, name: str, cron: str, task_type: str, payload: Any = None, *, queue: str = DEFAULT_QUEUE,
        timeout: float | None = None,
    ) -> CronInfo:  # fmt: skip
        return await self._run(calls.add_cron(name, cron, task_type, payload, queue), timeout)

    async def crons(self, *, timeout: float | None = None) -> list[CronInfo]:
        return await self._run(calls.crons(), timeout)

    async def cron(self, name: str, *, timeout: float | None = None) -> CronInfo:
        return await self._run(calls.cron(name), timeout)

    async def delete_cron(self, name: str, *, timeout: float | None = None) -> None:
        await self._run(calls.delete_cron(name), timeout)

    # -- transport ----------------------------------------------------------------------------

    async def _run(self, call: calls.Call[T], timeout: float | None) -> T:
        return call.read(await self.call(call.kind, call.body, call.timeout if call.timeout is not None else timeout))

    async def call(self, kind: Kind, body: dict[str, Any], timeout: float | None = None) -> Any:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.ensure_future(self._read())
        corr = next(self._corr)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[corr] = fut
        limit = self.timeout if timeout is None else calls.timeout_s("timeout", timeout)
        sent = time.monotonic()
        try:
            await self._sock.send(encode(kind, corr, body))
            return await asyncio.wait_for(fut, limit)
        except TimeoutError:
            if self._heard < sent:  # nothing came since: a connection the broker refused (--max-peers) is dead
                self._reconnect()
            raise RequestTimeout(
                f"no answer from the broker at {self.endpoint} within {limit:g}s: is ajbroker running there?"
            ) from None
        finally:
            self._pending.pop(corr, None)

    def _reconnect(self) -> None:
        """A fresh connection on the same socket: ZeroMQ never retries a handshake the broker refused."""
        with contextlib.suppress(zmq.ZMQError):
            self._sock.disconnect(self.endpoint)
        self._sock.connect(self.endpoint)

    async def _read(self) -> None:
        while True:
            frames = await self._sock.recv_multipart()
            self._heard = time.monotonic()
            try:
                frame = decode(frames, HARD_LIMITS, validate=False)
            except ProtocolError:
                continue
            fut = self._pending.get(frame.corr)
            if fut is None or fut.done():
                continue
            if frame.kind is Kind.ERROR:
                fut.set_exception(from_reply(frame.body.get("code", 0), frame.body.get("message", "")))
            else:
                fut.set_result(frame.body["data"])
