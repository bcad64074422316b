"""Hostile frames from raw sockets: each gets an error with a code, and the broker pays nothing for it."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import msgpack
import psutil
import pytest
import zmq

from ajq import Client
from ajq.protocol import ErrorCode, Kind, encode, encode_value
from ajq.protocol.limits import max_credit
from tests.faults.ledger import count, finals, runs
from tests.harness import BrokerHandle, Proc, start_worker, wait_for
from tests.rawpeer import RawPeer

FAULT_APP = "tests.apps.faults:router"


def _rss_mb(broker: BrokerHandle) -> float:
    return float(psutil.Process(broker.proc.pid).memory_info().rss) / 2**20


def _submit(corr: int, tasks: bytes) -> bytes:
    """[1, "submit", corr, {"queue": "H", "tasks": <tasks>}] with `tasks` given as raw msgpack."""
    return b"\x94\x01\xa6submit" + msgpack.packb(corr) + b"\x82\xa5queue\xa1H\xa5tasks" + tasks


GARBAGE: list[tuple[str, list[bytes], ErrorCode]] = [
    ("not msgpack", [b"\xc1\xc1"], ErrorCode.BAD_FRAME),
    ("empty frame", [b""], ErrorCode.BAD_FRAME),
    ("two frames", [b"a", b"b"], ErrorCode.BAD_FRAME),
    ("not an array", [msgpack.packb({"a": 1})], ErrorCode.BAD_FRAME),
    ("wrong version", [msgpack.packb([99, "get", 7, {"id": "x"}])], ErrorCode.BAD_VERSION),
    ("unknown kind", [msgpack.packb([1, "launch", 7, {}])], ErrorCode.UNKNOWN_KIND),
    ("kind only the broker sends", [encode(Kind.DELIVER, 7, {"tasks": []})], ErrorCode.UNKNOWN_KIND),
    ("missing field", [encode(Kind.GET, 7, {})], ErrorCode.BAD_FIELD),
    ("wrong type", [encode(Kind.GET, 7, {"id": 5})], ErrorCode.BAD_FIELD),
    ("unknown field", [encode(Kind.GET, 7, {"id": "x", "zzz": 1})], ErrorCode.BAD_FIELD),
    ("bool for an int", [encode(Kind.QUEUE_CONFIGURE, 7, {"name": "G", "max_concurrent": True})], ErrorCode.BAD_FIELD),
    ("zero concurrency", [encode(Kind.QUEUE_CONFIGURE, 7, {"name": "G", "max_concurrent": 0})], ErrorCode.BAD_FIELD),
    ("empty batch", [encode(Kind.SUBMIT, 7, {"queue": "G", "tasks": []})], ErrorCode.BAD_FIELD),
    (
        "payload not bytes",
        [encode(Kind.SUBMIT, 7, {"queue": "G", "tasks": [{"type": "t", "payload": 1}]})],
        ErrorCode.BAD_FIELD,
    ),
    (
        "oversized payload",
        [encode(Kind.SUBMIT, 7, {"queue": "G", "tasks": [{"type": "t", "payload": b"x" * (2 << 20)}]})],
        ErrorCode.TOO_LARGE,
    ),
    (
        "batch over the limit",
        [encode(Kind.SUBMIT, 7, {"queue": "G", "tasks": [{"type": "t", "payload": b""}] * 10_001})],
        ErrorCode.TOO_LARGE,
    ),
    ("oversized frame", [msgpack.packb([1, "get", 7, {"id": "x" * (9 << 20)}])], ErrorCode.TOO_LARGE),
    ("credit before hello", [encode(Kind.CREDIT, 7, {"n": 1})], ErrorCode.NOT_REGISTERED),
    ("unknown task", [encode(Kind.GET, 7, {"id": "nope"})], ErrorCode.UNKNOWN_TASK),
]


HOSTILE = [
    ("8M empty maps", _submit(11, b"\xdd" + (8_000_000).to_bytes(4, "big") + b"\x80" * 8_000_000)),
    ("800 lists of 10,000", _submit(12, b"\xdc\x03\x20" + (b"\xdc\x27\x10" + b"\x80" * 10_000) * 800)),
    ("100,000 deep", _submit(13, b"\x91" * 100_000 + b"\xc0")),
    ("over the frame limit", _submit(14, b"\xdd" + (9_000_000).to_bytes(4, "big") + b"\x80" * 9_000_000)),
]


@pytest.mark.timeout(120)
def test_frames_built_to_cost_memory_get_too_large_and_cost_nothing(broker: BrokerHandle) -> None:
    c = broker.client()
    rss = _rss_mb(broker)
    peer = RawPeer(broker.endpoint)
    try:
        for _ in range(3):
            for name, data in HOSTILE:
                # When a frame built to decode into gigabytes arrives, Then it gets TOO_LARGE with its corr.
                peer.send_frames([data])
                reply = peer.recv(timeout=10)
                assert reply.kind is Kind.ERROR, name
                assert reply.body["code"] == ErrorCode.TOO_LARGE, f"{name}: {reply.body}"
                assert reply.corr == msgpack.unpackb(data[9:10]), name
    finally:
        peer.close()
    # And the broker grew by little (decoding the first frame whole took 578 MB) and still serves.
    grown_mb = _rss_mb(broker) - rss
    assert grown_mb < 64, f"the broker grew by {grown_mb:.0f} MB"
    assert c.submit("after", None, queue="H").id
    assert next(q.counts for q in c.queues() if q.name == "H")["new"] == 1


@pytest.mark.timeout(60)
def test_garbage_gets_error_replies_and_changes_nothing(broker: BrokerHandle) -> None:
    c = broker.client()
    before = {q.name: q.counts for q in c.queues()}
    peer = RawPeer(broker.endpoint)
    try:
        for name, frames, code in GARBAGE:
            # When a bad message arrives, Then it is answered with an error naming the problem.
            peer.send_frames(frames)
            reply = peer.recv()
            assert reply.kind is Kind.ERROR, name
            assert reply.body["code"] == code, f"{name}: {reply.body}"
            assert reply.body["message"], name
            if code is not ErrorCode.BAD_FRAME:
                assert reply.corr == 7, name
    finally:
        peer.close()
    # And the broker still serves, with nothing else changed.
    assert {q.name: q.counts for q in c.queues()} == before
    t = c.submit("after", {"ok": True}, queue="G")
    assert c.get(t.id).state == "new"


@pytest.mark.timeout(60)
def test_a_bad_request_among_good_ones_in_one_step_is_refused_alone(broker: BrokerHandle) -> None:
    # Given three SUBMITs sent back to back, so the broker reads them in one step: the middle one
    # names a task id that exists.
    c = broker.client()
    c.submit("a", None, task_id="dup-1", queue="B")
    peer = RawPeer(broker.endpoint)
    try:
        for corr, task_id in ((1, "new-1"), (2, "dup-1"), (3, "new-2")):
            task = {"type": "b", "payload": encode_value(None), "id": task_id}
            peer.send(Kind.SUBMIT, {"queue": "B", "tasks": [task]}, corr)
        replies = {f.corr: f for f in (peer.recv() for _ in range(3))}
    finally:
        peer.close()
    # Then only the bad one is refused, and the good ones around it are applied.
    assert [replies[n].kind for n in (1, 2, 3)] == [Kind.REPLY, Kind.ERROR, Kind.REPLY]
    assert replies[2].body["code"] == ErrorCode.DUPLICATE
    assert (c.get("dup-1").type, c.get("new-1").type, c.get("new-2").type) == ("a", "b", "b")


@pytest.mark.timeout(60)
def test_a_frame_over_the_socket_limit_cuts_that_peer_off_and_nothing_else(broker: BrokerHandle) -> None:
    c = broker.client()
    rss = _rss_mb(broker)
    peer = RawPeer(broker.endpoint)
    try:
        # When a peer sends a frame over ZeroMQ's limit (64 MiB), Then it gets no answer.
        peer.send_frames([_submit(21, b"\xc4\x00" + b"\x00" * (65 << 20))])
        assert not peer.sock.poll(1000)
    finally:
        peer.close()
    # And the broker is unaffected: it answers, takes tasks, and did not keep the frame.
    assert c.submit("after", None, queue="H").id
    grown_mb = _rss_mb(broker) - rss
    assert grown_mb < 32, f"the broker grew by {grown_mb:.0f} MB"


@pytest.mark.timeout(90)
def test_a_worker_that_takes_credit_and_never_reads_costs_the_others_nothing(
    broker: BrokerHandle, tmp_path: Path, procs: list[Proc]
) -> None:
    # Given a raw worker that registers, takes all the credit it may and then never reads or beats.
    c = broker.client()
    ids = c.submit_many([("work", {"s": 0}) for _ in range(100)], queue="NR")
    peer = RawPeer(broker.endpoint, b"mute-worker")
    peer.sock.setsockopt(zmq.RCVHWM, 1)
    try:
        hello = {"worker_id": "mute-worker", "host": "h", "pid": 1, "procs": 1, "queues": ["NR"]}
        peer.send(Kind.HELLO, hello, 1)
        assert peer.recv().kind is Kind.REPLY
        peer.send(Kind.CREDIT, {"n": max_credit(1)})
        wait_for(lambda: c.queue_info("NR").counts.get("active", 0) == max_credit(1), 10, "the mute worker's leases")
        muted_at = time.time()
        # When a real worker comes, and a client pings the broker throughout.
        pings: list[float] = []
        procs.append(start_worker(broker, tmp_path, FAULT_APP, procs=2, queues=("NR",)))
        with Client(broker.endpoint, timeout=2) as pinger:
            while c.queue_info("NR").counts.get("complete", 0) < 100:
                start = time.perf_counter()
                pinger.info()
                pings.append(time.perf_counter() - start)
        done = [c.get(i) for i in ids]
    finally:
        peer.close()
    # Then the mute worker's leases came back, the real worker finished everything, and pings stayed fast.
    ran = runs(tmp_path)
    last = max(d.finished_at.timestamp() for d in done if d.finished_at)
    figures = count("mute-worker", "a worker takes credit and never reads", ids, finals(done, "complete"), ran,
                    recovery_s=last - muted_at)  # fmt: skip
    figures.report()
    p99 = statistics.quantiles(pings, n=100)[98] if len(pings) >= 100 else max(pings)
    print(f"mute worker: {len(pings)} pings, p99 {p99 * 1000:.1f} ms")
    assert (figures.lost, figures.unexpected, figures.overlap) == (0, 0, 0)
    assert p99 < 0.05
