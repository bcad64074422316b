"""The broker's socket loop in this process, on an inproc endpoint, so what one step reads is exact."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from ajq.broker.config import BrokerConfig
from ajq.broker.server import Server
from ajq.protocol import Kind, Limits, decode, encode, encode_value


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    config = BrokerConfig(
        bind="inproc://broker", events_bind="inproc://events", db=str(tmp_path / "s.db"), max_step_bytes=2_500_000
    )
    s = Server(config)
    try:
        yield s
    finally:
        s.close()


@pytest.mark.timeout(30)
def test_one_step_reads_no_more_than_its_byte_cap(server: Server) -> None:
    # Given five 1 MB messages already waiting (inproc: a sent message is in the pipe at once).
    dealer = server.ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect("inproc://broker")
    big = encode(Kind.GET, 1, {"id": "x" * 1_000_000})
    try:
        for _ in range(5):
            dealer.send(big)
        # When the loop reads its inbox, Then each step stops once past 2.5 MB: 3 then 2 messages.
        assert [len(server.read_inbox()) for _ in range(3)] == [3, 2, 0]
    finally:
        dealer.close(0)


@pytest.mark.timeout(30)
def test_messages_past_the_row_bound_go_first_at_the_next_turn(server: Server) -> None:
    # Given four full SUBMITs waiting, with batches of at most 5 (a step takes 2 batches' worth).
    server.broker.limits = Limits(max_batch=5)
    dealer = server.ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect("inproc://broker")
    tasks = [{"type": "t", "payload": encode_value(i)} for i in range(5)]
    try:
        for corr in range(1, 5):
            dealer.send(encode(Kind.SUBMIT, corr, {"queue": "Q", "tasks": tasks}))
        # When the loop turns, Then each turn applies two of them, in the order they came.
        server.turn()
        assert server.broker.queues.count("Q", "new") == 10
        server.turn()
        assert server.broker.queues.count("Q", "new") == 20
        replies = [decode([dealer.recv()]) for _ in range(4)]
        assert [f.corr for f in replies] == [1, 2, 3, 4]
    finally:
        dealer.close(0)
