"""Fault tests: killed processes, stale answers, garbage input. They count tasks, not log lines."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import msgpack
import pytest

from ajq import Client, ClientError
from ajq.protocol import ErrorCode, Kind, encode, encode_value
from tests.harness import BrokerHandle, Proc, events, start_broker, start_worker, wait_for
from tests.rawpeer import RawPeer

APP = "tests.apps.basic:router"


def overlap(test_dir: Path) -> int:
    """The most handlers that were running at one instant, from their start/end events."""
    marks = sorted((when, 1 if what == "start" else -1) for what, _, when, _ in events(test_dir))
    running = peak = 0
    for _, delta in marks:
        running += delta
        peak = max(peak, running)
    return peak


@pytest.mark.timeout(120)
def test_max_concurrent_holds_across_three_racing_workers(
    broker: BrokerHandle, tmp_path: Path, procs: list[Proc]
) -> None:
    # Given a queue limited to 3 at once and 3 workers of 2 processes each (6 slots).
    c = broker.client()
    c.configure_queue("LIM", max_concurrent=3)
    procs += [start_worker(broker, tmp_path, APP, procs=2, queues=("LIM",)) for _ in range(3)]
    # When 60 tasks of 50 ms race for them.
    ids = c.submit_many([("sleep", {"s": 0.05}) for _ in range(60)], queue="LIM")
    done = [c.wait(i, timeout=60) for i in ids]
    # Then every task completed once, and never were more than 3 running (but 3 were).
    peak = overlap(tmp_path)
    print(f"max_concurrent=3 tasks=60 completed={sum(d.state == 'complete' for d in done)} peak_overlap={peak}")
    assert all(d.state == "complete" and d.tries == 1 for d in done)
    assert peak == 3


@pytest.mark.timeout(60)
def test_worker_killed_mid_task_task_runs_again_after_its_lease(
    broker: BrokerHandle, tmp_path: Path, procs: list[Proc]
) -> None:
    # Given a task running on a worker (max_run_time 1 s).
    c = broker.client()
    c.configure_queue("Q", max_run_time=1)
    first = start_worker(broker, tmp_path, APP, queues=("Q",))
    procs.append(first)
    t = c.submit("sleep", {"s": 30, "only_try": 1}, queue="Q")
    wait_for(lambda: any(e[0] == "start" for e in events(tmp_path)), 15, "the task to start")
    # When the worker's supervisor is SIGKILLed, and another worker comes.
    first.kill()
    procs.append(start_worker(broker, tmp_path, APP, queues=("Q",)))
    # Then the task runs again once its lease has expired, and completes on its second try.
    info = c.wait(t.id, timeout=30)
    starts = [e for e in events(tmp_path) if e[0] == "start"]
    print(f"worker SIGKILL: state={info.state} tries={info.tries} starts={len(starts)}")
    assert (info.state, info.tries, len(starts)) == ("complete", 2, 2)


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


@pytest.mark.timeout(120)
def test_broker_sigkilled_during_a_burst_loses_no_acknowledged_task(broker: BrokerHandle) -> None:
    # Given 3 clients submitting as fast as they can, singly and in batches of 50.
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def submitter(batch: int) -> None:
        with Client(broker.endpoint, timeout=2) as c:
            while not stop.is_set():
                try:
                    ids = c.submit_many([("burst", {"i": i}) for i in range(batch)], queue="BURST")
                except ClientError:
                    return
                with lock:
                    acked.extend(ids)

    threads = [threading.Thread(target=submitter, args=(b,)) for b in (1, 1, 50)]
    for th in threads:
        th.start()
    try:
        # When the broker is SIGKILLed in the middle of it.
        wait_for(lambda: len(acked) >= 2_000, 60, "2,000 acknowledged tasks")
        broker.proc.signal(signal.SIGKILL)
        broker.proc.wait(10)
    finally:
        stop.set()
        for th in threads:
            th.join(30)
    broker.restart()
    # Then every acknowledged task is there after the restart.
    c = broker.client()
    stored = c.queue_info("BURST").counts.get("new", 0)
    missing = [i for i in acked[::97] if c.get(i).state != "new"]
    print(f"broker SIGKILL: acknowledged={len(acked)} stored={stored} lost={max(0, len(acked) - stored)}")
    assert stored >= len(acked) and not missing


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


def test_a_bad_request_in_a_batch_does_not_undo_the_others(broker: BrokerHandle) -> None:
    # Given one valid submit and one with a duplicate id arriving together, Then only the bad one fails.
    c = broker.client()
    c.submit("a", None, task_id="dup-1")
    with pytest.raises(ClientError, match="already exists"):
        c.submit("a", None, task_id="dup-1")
    assert c.submit("b", None, task_id="dup-2").id == "dup-2"
    assert c.get("dup-1").type == "a" and c.get("dup-2").type == "b"


@pytest.mark.timeout(120)
def test_a_full_database_refuses_clearly_loses_nothing_and_recovers(tmp_path: Path) -> None:
    # Given a broker whose database may not grow past 2 MB (SQLite answers as on a full disk).
    broker = start_broker(tmp_path, "--max-db-mb", "2")
    try:
        c = broker.client()
        acked: list[str] = []
        # When tasks are submitted until the broker refuses,
        with pytest.raises(ClientError, match="free disk space") as refusal:
            for _ in range(1000):
                acked += c.submit_many([("fill", {"blob": "x" * 2000})] * 50, queue="FULL")
        # Then the refusal is a clear error, every acknowledged task is there, and reads still work.
        stored = c.queue_info("FULL").counts.get("new", 0)
        print(f"full database: acknowledged={len(acked)} stored={stored} refusal={refusal.value}")
        assert stored == len(acked) > 0
        assert c.get(acked[-1]).state == "new"
        # And once space is freed, it takes tasks again.
        assert c.purge_queue("FULL") == len(acked)
        assert c.submit("fill", {"small": True}, queue="FULL").id
    finally:
        broker.close()
