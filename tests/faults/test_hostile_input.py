"""Hostile frames from raw sockets: each gets an error with a code, and the broker pays nothing for it."""

from __future__ import annotations

import msgpack
import psutil
import pytest

from ajq.protocol import ErrorCode, Kind
from tests.harness import BrokerHandle
from tests.rawpeer import RawPeer


def _submit(corr: int, tasks: bytes) -> bytes:
    """[1, "submit", corr, {"queue": "H", "tasks": <tasks>}] with `tasks` given as raw msgpack."""
    return b"\x94\x01\xa6submit" + msgpack.packb(corr) + b"\x82\xa5queue\xa1H\xa5tasks" + tasks


HOSTILE = [
    ("8M empty maps", _submit(11, b"\xdd" + (8_000_000).to_bytes(4, "big") + b"\x80" * 8_000_000)),
    ("800 lists of 10,000", _submit(12, b"\xdc\x03\x20" + (b"\xdc\x27\x10" + b"\x80" * 10_000) * 800)),
    ("100,000 deep", _submit(13, b"\x91" * 100_000 + b"\xc0")),
    ("over the frame limit", _submit(14, b"\xdd" + (9_000_000).to_bytes(4, "big") + b"\x80" * 9_000_000)),
]


@pytest.mark.timeout(120)
def test_frames_built_to_cost_memory_get_too_large_and_cost_nothing(broker: BrokerHandle) -> None:
    c = broker.client()
    rss = psutil.Process(broker.proc.pid).memory_info().rss
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
    grown_mb = (psutil.Process(broker.proc.pid).memory_info().rss - rss) / 2**20
    assert grown_mb < 64, f"the broker grew by {grown_mb:.0f} MB"
    assert c.submit("after", None, queue="H").id
    assert next(q.counts for q in c.queues() if q.name == "H")["new"] == 1
