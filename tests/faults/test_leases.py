"""Leases under stale answers and racing workers: fencing refuses the old, limits hold exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from ajq.protocol import ErrorCode, Kind, encode_value
from tests.faults.ledger import count, finals, peak, runs
from tests.harness import BrokerHandle, Proc, start_worker
from tests.rawpeer import RawPeer

APP = "tests.apps.faults:router"


@pytest.mark.timeout(120)
def test_max_concurrent_holds_across_three_racing_workers(
    broker: BrokerHandle, tmp_path: Path, procs: list[Proc]
) -> None:
    # Given a queue limited to 3 at once and 3 workers of 2 processes each (6 slots).
    c = broker.client()
    c.configure_queue("LIM", max_concurrent=3)
    procs += [start_worker(broker, tmp_path, APP, procs=2, queues=("LIM",)) for _ in range(3)]
    # When 60 tasks of 50 ms race for them.
    ids = c.submit_many([("work", {"s": 0.05}) for _ in range(60)], queue="LIM")
    done = [c.wait(i, timeout=60) for i in ids]
    # Then every task completed once, and never were more than 3 running (but 3 were).
    ran = runs(tmp_path)
    figures = count("max-concurrent", "3 workers race for a limit of 3", ids, finals(done, "complete"), ran)
    figures.report()
    assert (figures.lost, figures.unexpected, figures.overlap, figures.duplicated) == (0, 0, 0, 0)
    assert all(d.tries == 1 for d in done)
    assert peak(ran) == 3


@pytest.mark.timeout(60)
def test_late_answer_after_a_new_lease_is_refused(broker: BrokerHandle) -> None:
    # Given a raw worker holding a task whose lease (0.3 s + 0.5 s grace) runs out.
    c = broker.client()
    c.configure_queue("F", max_run_time=0.3)
    t = c.submit("x", None, queue="F")
    peer = RawPeer(broker.endpoint, b"raw-worker-1")
    try:
        peer.send(Kind.HELLO, {"worker_id": "raw-worker-1", "host": "h", "pid": 1, "procs": 1, "queues": ["F"]}, 1)
        assert peer.recv().kind is Kind.REPLY
        peer.send(Kind.CREDIT, {"n": 2})
        first = peer.recv().body["tasks"][0]
        # When the lease expires the task is delivered again under a new token.
        second = peer.recv(timeout=10, beat_s=0.1).body["tasks"][0]
        assert (first["id"], second["id"]) == (t.id, t.id)
        assert second["token"] != first["token"] and second["tries"] == 2
        # Then an answer under the old token is refused and changes nothing.
        stale = {"id": t.id, "token": first["token"], "outcome": "complete", "result": encode_value("old")}
        peer.send(Kind.RESULTS, {"results": [stale]}, 2)
        reply = peer.recv().body["data"]
        assert reply["accepted"] == [] and reply["refused"][0][1] == ErrorCode.STALE_LEASE
        assert c.get(t.id).state == "active"
        # And the current lease's answer is applied.
        fresh = {"id": t.id, "token": second["token"], "outcome": "complete", "result": encode_value("new")}
        peer.send(Kind.RESULTS, {"results": [fresh]}, 3)
        assert peer.recv().body["data"]["accepted"] == [t.id]
    finally:
        peer.close()
    info = c.get(t.id)
    assert (info.state, info.result, info.tries) == ("complete", "new", 2)
