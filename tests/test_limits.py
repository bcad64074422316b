"""Frame, payload and batch limits set by ajbroker's flags: refused with TOO_LARGE naming the flag,
announced to workers (welcome) and clients (INFO), and kept by both in what they send."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from ajq import AsyncClient, InvalidRequest
from ajq.protocol import ErrorCode, Kind, Limits, encode_value
from ajq.protocol.limits import HARD_BATCH, KIB, MAX_BATCH, MAX_FRAME_BYTES, MAX_PAYLOAD_BYTES, MIB
from ajq.worker.credit import batches
from tests.harness import BrokerHandle, Proc, start_broker, start_worker, wait_for
from tests.rawpeer import RawPeer

APP = "tests.apps.basic:router"


@pytest.fixture
def small(tmp_path: Path) -> Iterator[BrokerHandle]:
    """A broker with a 1 MiB frame, a 300 KiB payload and 10 tasks to a batch."""
    handle = start_broker(tmp_path, "--max-frame-mb", "1", "--max-payload-kb", "300", "--max-batch", "10")
    try:
        yield handle
    finally:
        handle.close()


def test_messages_over_the_brokers_limits_get_too_large_naming_the_flag(small: BrokerHandle) -> None:
    c = small.client()
    # A payload over the limit, from the client: refused, naming the limit and the flag that sets it.
    with pytest.raises(InvalidRequest, match=r"over the limit of 307200 \(ajbroker --max-payload-kb 300\)") as err:
        c.submit("t", b"x" * 600_000, queue="L")
    assert err.value.code == ErrorCode.TOO_LARGE
    peer = RawPeer(small.endpoint)
    try:
        # A batch of 11 and a frame of 1.5 MiB, from a raw peer: the same.
        tasks = [{"type": "t", "payload": encode_value(i)} for i in range(11)]
        peer.send(Kind.SUBMIT, {"queue": "L", "tasks": tasks}, 7)
        peer.send(Kind.GET, {"id": "x" * (3 * MIB // 2)}, 8)
        replies = {f.corr: f.body for f in (peer.recv(), peer.recv())}
    finally:
        peer.close()
    assert (replies[7]["code"], replies[8]["code"]) == (ErrorCode.TOO_LARGE, ErrorCode.TOO_LARGE)
    assert "11 tasks, more than the limit of 10 (ajbroker --max-batch 10)" in replies[7]["message"]
    assert "over the limit of 1048576 (ajbroker --max-frame-mb 1)" in replies[8]["message"]
    # And nothing was applied.
    assert "L" not in {q.name for q in c.queues()}


def test_submit_many_learns_the_brokers_limits_and_splits_within_them(small: BrokerHandle) -> None:
    c = small.client()
    # When a client submits more tasks than one batch holds, and more bytes than one frame holds,
    ids = c.submit_many([("t", i) for i in range(25)], queue="S")
    big = c.submit_many([("t", b"x" * 300_000) for _ in range(4)], queue="S")
    # Then every task is in (batches of 10; one 300 KB task to a message), as the broker announced.
    assert len(set(ids + big)) == 29 and c.queue_info("S").counts == {"new": 29}
    assert c.limits == Limits(MIB, 300 * KIB, 10)


def test_the_async_client_learns_the_limits_too(small: BrokerHandle) -> None:
    async def run() -> list[str]:
        async with AsyncClient(small.endpoint) as c:
            ids = await c.submit_many([("t", b"x" * 300_000) for _ in range(3)] + [("t", i) for i in range(12)])
            assert c.limits == Limits(MIB, 300 * KIB, 10)
            return ids

    assert len(set(asyncio.run(run()))) == 15


@pytest.mark.timeout(60)
def test_a_result_over_the_brokers_payload_limit_fails_the_try_clearly(tmp_path: Path, procs: list[Proc]) -> None:
    # Given a broker taking results of 1 KiB at most, and a worker (its own limit is 32 MiB).
    broker = start_broker(tmp_path, "--max-payload-kb", "1")
    try:
        c = broker.client()
        c.configure_queue("BIG", max_tries=1)
        procs.append(start_worker(broker, tmp_path, APP, queues=("BIG",)))
        # When a handler returns 5 KB, and another 100 bytes.
        big, fine = c.submit("inflate", {"bytes": 5000}, queue="BIG"), c.submit("inflate", {"bytes": 100}, queue="BIG")
        # Then the first try fails (dead: one try allowed) saying why, instead of a refused outcome left
        # to the lease's expiry; the other completes.
        done = c.wait(big.id, timeout=20)
        assert done.state == "dead", done
        assert "over the broker's limit of 1024 (ajbroker --max-payload-kb)" in (done.last_error or "")
        assert c.wait(fine.id, timeout=20).result == "x" * 100
    finally:
        broker.close()


@pytest.mark.timeout(60)
def test_a_worker_hands_back_more_leases_than_a_batch_holds_in_several_releases(
    tmp_path: Path, procs: list[Proc]
) -> None:
    # Given a broker with batches of 5, and a worker holding 1 running task and 20 ready ones.
    broker = start_broker(tmp_path, "--max-batch", "5")
    try:
        c = broker.client()
        ids = c.submit_many([("sleep", {"s": 1.0}) for _ in range(25)], queue="R")
        worker = start_worker(broker, tmp_path, APP, queues=("R",), extra=["--prefetch", "20"])
        procs.append(worker)
        wait_for(lambda: c.queue_info("R").counts.get("active") == 21, 10, "21 leases")
        # When it is told to stop, it hands back the 20 it has not started.
        worker.signal(signal.SIGTERM)
        assert worker.wait(20) == 0
        # Then all 20 are waiting again (RELEASEs of 5 at most), none left to its lease's expiry.
        counts = c.queue_info("R").counts
        assert counts == {"complete": 1, "new": 24}, counts
        assert sum(c.get(i).tries for i in ids) == 1
    finally:
        broker.close()


def test_outcomes_and_leases_are_batched_within_the_announced_limits() -> None:
    items = [{"id": str(i), "token": i, "outcome": "complete", "result": b"x" * 100} for i in range(12)]
    assert [len(b) for b in batches(items, Limits(max_batch=5))] == [5, 5, 2]
    # About half a frame each, by size: 12 results of 100 bytes (+64) in frames of 700 bytes.
    assert [len(b) for b in batches(items, Limits(max_frame_bytes=700, max_batch=100))] == [2] * 6


def test_announced_limits_within_the_hard_bounds_else_the_defaults() -> None:
    welcome = {"max_frame_bytes": 2 * MIB, "max_payload_bytes": 4096, "max_batch": 7, "heartbeat_s": 1.0}
    assert Limits.announced(welcome) == Limits(2 * MIB, 4096, 7)
    assert Limits.announced({}) == Limits(MAX_FRAME_BYTES, MAX_PAYLOAD_BYTES, MAX_BATCH)  # an older broker
    nonsense = {"max_frame_bytes": 1 << 40, "max_payload_bytes": True, "max_batch": HARD_BATCH + 1}
    assert Limits.announced(nonsense) == Limits()
    # A payload over half the frame it came with is not believed either.
    assert Limits.announced({"max_frame_bytes": MIB, "max_payload_bytes": MIB}).max_payload_bytes == MIB // 2


def test_the_broker_announces_its_limits_to_workers_and_clients(small: BrokerHandle) -> None:
    peer = RawPeer(small.endpoint, b"w-limits")
    try:
        hello = {"worker_id": "w-limits", "host": "h", "pid": 1, "procs": 1, "queues": ["A"]}
        peer.send(Kind.HELLO, hello, 1)
        welcome = peer.recv().body["data"]
    finally:
        peer.close()
    info = small.client().info()
    for data in (welcome, info):
        assert Limits.announced(data) == Limits(MIB, 300 * KIB, 10), data
