"""The asyncio client: the same calls as Client, awaitable, many in flight on one socket."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import zmq
import zmq.asyncio
from ajq.client import calls
from ajq.client.client import WAIT_MARGIN_S
from ajq.client.errors import ClientError, RequestTimeout, from_reply
from ajq.client.models import QueueInfo, Submitted, TaskInfo
from ajq.protocol import DEFAULT_QUEUE, Kind, ProtocolError, decode, defaults, encode


class AsyncClient:
    """`async with AsyncClient(endpoint) as c: await c.submit(...)`; concurrent calls are fine."""

    def __init__(self, endpoint: str | None = None, *, timeout: float = 10.0) -> None:
        self.endpoint = defaults.endpoint(endpoint)
        self.timeout = timeout
        self._ctx = zmq.asyncio.Context()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
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

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        self._sock.close(0)
        self._ctx.term()

    async def submit(
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
        opts = calls.Options(task_id, deadline, run_at, delay, unique_for, tuple(depends_on), load_results)
        item = calls.task_item(task_type, payload, opts)
        data = await self.call(Kind.SUBMIT, {"queue": queue, "tasks": [item]}, timeout)
        return Submitted(data["ids"][0], task_type, queue)

    async def submit_many(
        self, tasks: Iterable[Any], *, queue: str = DEFAULT_QUEUE, timeout: float | None = None
    ) -> list[str]:
        ids: list[str] = []
        for kind, body in calls.submit_batches(queue, calls.many_items(tasks)):
            ids.extend((await self.call(kind, body, timeout))["ids"])
        return ids

    async def get(self, task_id: str, *, timeout: float | None = None) -> TaskInfo:
        return TaskInfo.from_wire(await self.call(Kind.GET, {"id": task_id}, timeout))

    async def wait(self, task_id: str, timeout: float = 30.0) -> TaskInfo:
        body = {"id": task_id, "timeout_s": float(timeout)}
        return TaskInfo.from_wire(await self.call(Kind.WAIT, body, timeout + WAIT_MARGIN_S))

    async def queue_info(self, name: str, *, timeout: float | None = None) -> QueueInfo:
        return QueueInfo.from_wire(await self.call(Kind.QUEUE_INFO, {"name": name}, timeout))

    async def configure_queue(
        self,
        name: str,
        *,
        max_concurrent: int | None = None,
        max_run_time: float | None = None,
        max_tries: int | None = None,
        timeout: float | None = None,
    ) -> QueueInfo:
        body = calls.configure_body(name, max_concurrent=max_concurrent, max_run_time=max_run_time, max_tries=max_tries)
        return QueueInfo.from_wire(await self.call(Kind.QUEUE_CONFIGURE, body, timeout))

    async def cancel(self, task_id: str, *, timeout: float | None = None) -> TaskInfo:
        """Cancel a task (see Client.cancel); returns its state right after the request."""
        return TaskInfo.from_wire(await self.call(Kind.CANCEL, {"id": task_id}, timeout))

    async def call(self, kind: Kind, body: dict[str, Any], timeout: float | None = None) -> Any:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.ensure_future(self._read())
        corr = next(self._corr)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[corr] = fut
        limit = self.timeout if timeout is None else timeout
        try:
            await self._sock.send(encode(kind, corr, body))
            return await asyncio.wait_for(fut, limit)
        except TimeoutError:
            raise RequestTimeout(
                f"no answer from the broker at {self.endpoint} within {limit:g}s: is ajbroker running there?"
            ) from None
        finally:
            self._pending.pop(corr, None)

    async def _read(self) -> None:
        while True:
            frames = await self._sock.recv_multipart()
            try:
                frame = decode(frames, validate=False)
            except ProtocolError:
                continue
            fut = self._pending.get(frame.corr)
            if fut is None or fut.done():
                continue
            if frame.kind is Kind.ERROR:
                fut.set_exception(from_reply(frame.body.get("code", 0), frame.body.get("message", "")))
            else:
                fut.set_result(frame.body["data"])
