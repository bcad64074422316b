"""The client API against a real broker: errors, asyncio, bounded broker memory."""

from __future__ import annotations

import asyncio

import psutil
import pytest

from ajq import AsyncClient, Client, ClientError, QueueNotFound, RequestTimeout, TaskNotFound
from tests.harness import BrokerHandle, free_port


def test_errors_are_clear_client_errors(broker: BrokerHandle) -> None:
    c = broker.client()
    with pytest.raises(TaskNotFound, match="no task has the id"):
        c.get("missing")
    with pytest.raises(QueueNotFound, match="ajc queue configure"):
        c.queue_info("missing")
    with pytest.raises(ClientError, match="cannot be sent as msgpack"):
        c.submit("t", object())
    with pytest.raises(ClientError, match="tcp://host:port"):
        Client("nonsense://x")


def test_no_broker_is_a_timeout_naming_the_endpoint() -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with Client(endpoint, timeout=0.3) as c, pytest.raises(RequestTimeout, match="is ajbroker running"):
        c.queues()


def test_async_client_many_calls_in_flight(broker: BrokerHandle) -> None:
    async def run() -> list[str]:
        async with AsyncClient(broker.endpoint) as c:
            subs = await asyncio.gather(*(c.submit("t", i, queue="A") for i in range(50)))
            infos = await asyncio.gather(*(c.get(s.id) for s in subs))
            return [i.state for i in infos]

    assert asyncio.run(run()) == ["new"] * 50


@pytest.mark.timeout(120)
def test_broker_memory_does_not_grow_with_queue_depth(broker: BrokerHandle) -> None:
    # Given 50,000 queued tasks, When 200,000 more are queued, Then the broker's memory barely moves.
    c = broker.client(timeout=30)
    proc = psutil.Process(broker.proc.pid)
    payload = {"to": "someone@example.com", "body": "x" * 100}
    c.submit_many([("t", payload)] * 50_000, queue="DEEP")
    before = proc.memory_info().rss
    c.submit_many([("t", payload)] * 200_000, queue="DEEP")
    grown = proc.memory_info().rss - before
    print(f"broker RSS {before / 2**20:.1f} MiB at 50k queued; +{grown / 2**20:.1f} MiB for 200k more")
    assert c.queue_info("DEEP").counts["new"] == 250_000
    assert grown < 16 * 2**20
