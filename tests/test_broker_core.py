"""The broker's state machine, stepped by hand with a moved clock: no sockets, no sleeping."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ajq.broker.config import BrokerConfig
from ajq.broker.core import Broker, Outgoing
from ajq.broker.store import Store
from ajq.protocol import ErrorCode, Frame, Kind, Limits, decode, encode, encode_value
from ajq.protocol.clock import Now

W1, W2, C = b"w1", b"w2", b"\x00client"


class Rig:
    """A Broker on a temp database with a hand-moved clock."""

    def __init__(self, path: Path) -> None:
        self.now = Now(1000.0, 1_700_000_000.0)
        self.store = Store(str(path))
        self.broker = Broker(self.store, BrokerConfig(db=str(path), heartbeat_s=10.0, lease_grace_s=1.0), self.now)
        self.corr = 0

    def advance(self, seconds: float) -> None:
        self.now = Now(self.now.mono + seconds, self.now.wall + seconds)

    def step(self, *msgs: tuple[bytes, Kind, dict[str, Any]]) -> list[tuple[bytes, Frame]]:
        inbox = []
        for ident, kind, body in msgs:
            self.corr += 1
            inbox.append([ident, encode(kind, self.corr, body)])
        out = self.broker.step(inbox, self.now)
        return [(o.ident, decode([o.data], validate=False)) for o in out if b"heartbeat" not in o.data]

    def hello(self, ident: bytes, queues: list[str], credit: int) -> list[tuple[bytes, Frame]]:
        body = {"worker_id": ident.decode(), "host": "h", "pid": 1, "procs": credit, "queues": queues}
        return self.step((ident, Kind.HELLO, body), (ident, Kind.CREDIT, {"n": credit}))

    def submit(self, queue: str, n: int) -> list[str]:
        tasks = [{"type": "t", "payload": encode_value(i)} for i in range(n)]
        (_, reply), *_ = self.step((C, Kind.SUBMIT, {"queue": queue, "tasks": tasks}))
        ids: list[str] = reply.body["data"]["ids"]
        return ids


def delivered(out: list[tuple[bytes, Frame]], ident: bytes) -> list[dict[str, Any]]:
    return [t for i, f in out if i == ident and f.kind is Kind.DELIVER for t in f.body["tasks"]]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path / "core.db")
    yield r
    r.store.close()


def test_max_concurrent_bounds_leases_across_workers(rig: Rig) -> None:
    # Given a queue limited to 3 and two workers with 5 free slots each.
    rig.step((C, Kind.QUEUE_CONFIGURE, {"name": "Q", "max_concurrent": 3}))
    rig.submit("Q", 10)
    out = rig.hello(W1, ["Q"], 5) + rig.hello(W2, ["Q"], 5)
    # Then only 3 tasks are leased in all.
    first = delivered(out, W1) + delivered(out, W2)
    assert len(first) == 3
    # When one completes, Then exactly one more is leased.
    t = first[0]
    ident = W1 if t in delivered(out, W1) else W2
    result = {"id": t["id"], "token": t["token"], "outcome": "complete", "result": encode_value("ok")}
    out = rig.step((ident, Kind.RESULTS, {"results": [result], "credit": 1}))
    assert len(delivered(out, W1) + delivered(out, W2)) == 1
    assert rig.broker.queues.count("Q", "active") == 3


def test_expired_lease_is_a_failed_try_and_the_old_token_is_refused(rig: Rig) -> None:
    rig.step((C, Kind.QUEUE_CONFIGURE, {"name": "Q", "max_run_time_s": 5.0, "max_tries": 2, "backoff_s": 0.0}))
    [task_id] = rig.submit("Q", 1)
    [first] = delivered(rig.hello(W1, ["Q"], 2), W1)
    # When the lease (5 s + 1 s grace) runs out while the worker keeps beating.
    rig.advance(5.5)
    assert delivered(rig.step((W1, Kind.HEARTBEAT, {})), W1) == []
    rig.advance(1.0)
    [second] = delivered(rig.step((W1, Kind.HEARTBEAT, {})), W1)
    # Then it is delivered again, on a new token, as try 2.
    assert (second["id"], second["tries"]) == (task_id, 2) and second["token"] != first["token"]
    stale = {"id": task_id, "token": first["token"], "outcome": "complete"}
    [(_, reply)] = rig.step((W1, Kind.RESULTS, {"results": [stale]}))
    assert reply.body["data"]["refused"][0][1] == ErrorCode.STALE_LEASE
    # And when the second lease runs out too, the task is dead (max_tries 2).
    rig.advance(6.5)
    rig.step((W1, Kind.HEARTBEAT, {}))
    row = rig.store.get_task(task_id)
    assert row is not None and (row.state, row.tries) == ("dead", 2)
    assert "lease expired" in (row.last_error or "")


def test_retry_waits_for_its_time_then_is_pushed(rig: Rig) -> None:
    [task_id] = rig.submit("Q", 1)
    [t] = delivered(rig.hello(W1, ["Q"], 1), W1)
    fail = {"id": t["id"], "token": t["token"], "outcome": "fail", "error": "boom", "retry_in_s": 30.0}
    assert delivered(rig.step((W1, Kind.RESULTS, {"results": [fail], "credit": 1})), W1) == []
    assert rig.broker.wake_in(rig.now) == pytest.approx(1.0)  # the retention timer comes first
    rig.advance(29.0)
    assert delivered(rig.step((W1, Kind.HEARTBEAT, {})), W1) == []
    rig.advance(1.0)
    [again] = delivered(rig.step(), W1)
    assert (again["id"], again["tries"]) == (task_id, 2)


def test_deadline_passed_before_start_means_expired_never_run(rig: Rig) -> None:
    late = {"type": "t", "payload": encode_value(None), "deadline": rig.now.wall + 5}
    [(_, reply)] = rig.step((C, Kind.SUBMIT, {"queue": "Q", "tasks": [late]}))
    [task_id] = reply.body["data"]["ids"]
    rig.advance(10)
    assert delivered(rig.hello(W1, ["Q"], 1), W1) == []
    row = rig.store.get_task(task_id)
    assert row is not None and (row.state, row.tries) == ("expired", 0)


def test_waiters_are_answered_after_the_commit_that_ends_the_task(rig: Rig) -> None:
    [task_id] = rig.submit("Q", 1)
    assert rig.step((C, Kind.WAIT, {"id": task_id, "timeout_s": 60.0})) == []
    [t] = delivered(rig.hello(W1, ["Q"], 1), W1)
    done = {"id": t["id"], "token": t["token"], "outcome": "complete", "result": encode_value(7)}
    out = rig.step((W1, Kind.RESULTS, {"results": [done]}))
    waits = [f for i, f in out if i == C]
    assert len(waits) == 1 and waits[0].body["data"]["state"] == "complete"


def test_release_hands_a_task_back_without_using_a_try(rig: Rig) -> None:
    [task_id] = rig.submit("Q", 1)
    [t] = delivered(rig.hello(W1, ["Q"], 1), W1)
    rig.step((W1, Kind.PAUSE, {}), (W1, Kind.RELEASE, {"leases": [{"id": t["id"], "token": t["token"]}]}))
    row = rig.store.get_task(task_id)
    assert row is not None and (row.state, row.tries) == ("new", 0)
    [again] = delivered(rig.hello(W2, ["Q"], 1), W2)
    assert (again["id"], again["tries"]) == (task_id, 1)


def test_restart_recovers_leases_and_counts_from_disk(rig: Rig, tmp_path: Path) -> None:
    rig.submit("Q", 3)
    rig.hello(W1, ["Q"], 2)
    reopened = Broker(Store(str(tmp_path / "core.db")), rig.broker.config, rig.now)
    assert reopened.queues.count("Q", "active") == 2 and reopened.queues.count("Q", "new") == 1
    assert len(reopened.leases) == 2


def test_big_deliveries_are_split_into_frames_within_the_limit(rig: Rig) -> None:
    # Given 7 tasks of 1 MiB each and a worker with room for all of them.
    blob = encode_value(b"x" * (1024 * 1024 - 16))
    tasks = [{"type": "t", "payload": blob} for _ in range(7)]
    rig.step((C, Kind.SUBMIT, {"queue": "Q", "tasks": tasks}))
    out = rig.broker.step(
        [
            [W1, encode(Kind.HELLO, 1, {"worker_id": "w1", "host": "h", "pid": 1, "procs": 8, "queues": ["Q"]})],
            [W1, encode(Kind.CREDIT, 0, {"n": 8})],
        ],
        rig.now,
    )
    frames = [o for o in out if o.task_ids]
    # Then they go out in several frames, each within the frame limit, 7 tasks in all.
    assert len(frames) > 1 and sum(len(o.task_ids or []) for o in frames) == 7
    assert all(len(o.data) <= rig.broker.limits.max_frame_bytes for o in frames)


@pytest.mark.parametrize(
    "body",
    [
        {"name": "Q", "max_run_time_s": float("nan")},
        {"name": "Q", "max_run_time_s": float("inf")},
        {"name": "Q", "max_concurrent": 2**63},
    ],
)
def test_non_finite_and_huge_numbers_are_refused(rig: Rig, body: dict[str, Any]) -> None:
    [(_, reply)] = rig.step((C, Kind.QUEUE_CONFIGURE, body))
    assert reply.kind is Kind.ERROR and reply.body["code"] == ErrorCode.BAD_FIELD
    assert "Q" not in rig.broker.queues


def test_an_answer_from_another_worker_is_refused(rig: Rig) -> None:
    [task_id] = rig.submit("Q", 1)
    [t] = delivered(rig.hello(W1, ["Q"], 1), W1)
    rig.hello(W2, ["Q"], 1)
    forged = {"id": task_id, "token": t["token"], "outcome": "complete"}
    [(_, reply)] = rig.step((W2, Kind.RESULTS, {"results": [forged]}))
    assert reply.body["data"]["refused"][0][1] == ErrorCode.STALE_LEASE
    row = rig.store.get_task(task_id)
    assert row is not None and row.state == "active"


def test_a_delivery_that_could_not_be_sent_costs_no_try(rig: Rig) -> None:
    [task_id] = rig.submit("Q", 1)
    out = rig.broker.step(
        [
            [W1, encode(Kind.HELLO, 1, {"worker_id": "w1", "host": "h", "pid": 1, "procs": 1, "queues": ["Q"]})],
            [W1, encode(Kind.CREDIT, 0, {"n": 1})],
        ],
        rig.now,
    )
    [delivery] = [o for o in out if o.task_ids]
    rig.broker.undeliverable(delivery)  # as the server does when the socket refuses the send
    rig.step()
    row = rig.store.get_task(task_id)
    assert row is not None and (row.state, row.tries) == ("new", 0)


def test_a_failing_database_refuses_the_writes_answers_the_reads_and_changes_nothing(rig: Rig) -> None:
    # Given a database that cannot grow (SQLite answers SQLITE_FULL, as on a full disk).
    pages = rig.store.db.execute("PRAGMA page_count").fetchone()[0]
    rig.store.db.execute(f"PRAGMA max_page_count = {pages}")
    tasks = [{"type": "t", "payload": encode_value(b"x" * 200_000)}]
    out = rig.step(
        (C, Kind.SUBMIT, {"queue": "Q", "tasks": tasks}), (C, Kind.GET, {"id": "nope"}), (C, Kind.QUEUE_LIST, {})
    )
    # Then the step is undone whole: the submit gets INTERNAL, no task was stored, and the two reads
    # are answered from what is on disk, each once.
    by_corr = {f.corr: f for _, f in out}
    assert sorted(by_corr) == [rig.corr - 2, rig.corr - 1, rig.corr] and len(out) == 3
    submit, get, listed = by_corr[rig.corr - 2], by_corr[rig.corr - 1], by_corr[rig.corr]
    assert submit.body["code"] == ErrorCode.INTERNAL and "free disk space" in submit.body["message"]
    assert get.body["code"] == ErrorCode.UNKNOWN_TASK
    assert listed.kind is Kind.REPLY and [q["name"] for q in listed.body["data"]] == ["DEFAULT"]
    assert rig.store.state_counts() == {}
    rig.store.db.execute("PRAGMA max_page_count = 1073741823")
    assert len(rig.submit("Q", 1)) == 1


def test_cron_fires_once_per_match_and_catches_up_once_after_downtime(rig: Rig, tmp_path: Path) -> None:
    # Given a schedule every 5 minutes.
    body = {"name": "report", "cron": "*/5 * * * *", "type": "r", "payload": encode_value(1), "queue": "Q"}
    [(_, reply)] = rig.step((C, Kind.CRON_ADD, body))
    first = reply.body["data"]["next_run"]
    assert first > rig.now.wall
    # When its time comes, Then it fires exactly once.
    rig.advance(first - rig.now.wall)
    rig.step()
    rig.step()
    assert rig.broker.queues.count("Q", "new") == 1
    # When the broker was down for an hour (6 matches missed), Then a restart fires one catch-up run.
    rig.advance(3600)
    reopened = Broker(Store(str(tmp_path / "core.db")), rig.broker.config, rig.now)
    reopened.step([], rig.now)
    reopened.step([], rig.now)
    assert reopened.queues.count("Q", "new") == 2
    assert reopened.schedules["report"].next_run > rig.now.wall


def test_a_bad_cron_expression_is_refused(rig: Rig) -> None:
    body = {"name": "x", "cron": "every minute", "type": "r", "payload": encode_value(1), "queue": "Q"}
    [(_, reply)] = rig.step((C, Kind.CRON_ADD, body))
    assert reply.kind is Kind.ERROR and "not a cron expression" in reply.body["message"]


def test_parents_results_too_big_for_one_delivery_end_the_task_with_a_clear_error(rig: Rig) -> None:
    big = encode_value(b"x" * 1_000_000)
    parents = []
    for i in range(5):
        [(_, reply)] = rig.step((C, Kind.SUBMIT, {"queue": "P", "tasks": [{"type": "t", "payload": encode_value(i)}]}))
        parents += reply.body["data"]["ids"]
    child = {"type": "t", "payload": encode_value(0), "depends_on": parents, "load_results": True}
    [(_, reply)] = rig.step((C, Kind.SUBMIT, {"queue": "Q", "tasks": [child]}))
    [child_id] = reply.body["data"]["ids"]
    tasks = delivered(rig.hello(W1, ["P"], 5), W1)
    done = [{"id": t["id"], "token": t["token"], "outcome": "complete", "result": big} for t in tasks]
    rig.step((W1, Kind.RESULTS, {"results": done}))
    assert delivered(rig.hello(W2, ["Q"], 1), W2) == []
    row = rig.store.get_task(child_id)
    assert row is not None and row.state == "terminated" and "pass references" in (row.last_error or "")


def test_a_wait_on_a_task_deleted_meanwhile_gets_unknown_task(rig: Rig) -> None:
    rig.step((C, Kind.QUEUE_CONFIGURE, {"name": "Q"}), (C, Kind.QUEUE_PAUSE, {"name": "Q"}))
    [task_id] = rig.submit("Q", 1)
    assert rig.step((C, Kind.WAIT, {"id": task_id, "timeout_s": 60.0})) == []
    out = rig.step((C, Kind.QUEUE_PURGE, {"name": "Q"}))
    errors = [f for _, f in out if f.kind is Kind.ERROR]
    assert len(errors) == 1 and errors[0].body["code"] == ErrorCode.UNKNOWN_TASK


def test_a_task_unreachable_at_submit_takes_no_unique_lock(rig: Rig) -> None:
    [parent] = rig.submit("Q", 1)
    rig.step((C, Kind.CANCEL, {"id": parent}))
    twin = {"type": "t", "payload": encode_value("x"), "unique_for_s": 3600.0, "depends_on": [parent]}
    [(_, first)] = rig.step((C, Kind.SUBMIT, {"queue": "Q", "tasks": [twin]}))
    [(_, second)] = rig.step((C, Kind.SUBMIT, {"queue": "Q", "tasks": [twin]}))
    assert first.kind is second.kind is Kind.REPLY


def test_a_late_complete_on_a_try_that_expired_is_taken_while_the_task_waits_to_retry(rig: Rig) -> None:
    # Given a task whose lease ran out (the worker was slow, not gone), with a try left.
    rig.step((C, Kind.QUEUE_CONFIGURE, {"name": "Q", "max_run_time_s": 5.0, "max_tries": 2}))
    [task_id] = rig.submit("Q", 1)
    [t] = delivered(rig.hello(W1, ["Q"], 1), W1)
    rig.step((W1, Kind.PAUSE, {}))
    rig.advance(6.5)
    rig.step((W1, Kind.HEARTBEAT, {}))
    row = rig.store.get_task(task_id)
    assert row is not None and row.state == "retry"
    # When its complete arrives late, under the same token, Then the work is not lost.
    done = {"id": task_id, "token": t["token"], "outcome": "complete", "result": encode_value("late")}
    [(_, reply)] = rig.step((W1, Kind.RESULTS, {"results": [done]}))
    assert reply.body["data"]["accepted"] == [task_id]
    row = rig.store.get_task(task_id)
    assert row is not None and row.state == "complete" and rig.broker.queues.count("Q", "retry") == 0


def test_a_late_complete_does_not_revive_a_dead_task(rig: Rig) -> None:
    # Given a task on its last try with a dependant, and a client waiting on it.
    rig.step((C, Kind.QUEUE_CONFIGURE, {"name": "Q", "max_run_time_s": 5.0, "max_tries": 1}))
    [task_id] = rig.submit("Q", 1)
    child = {"type": "t", "payload": encode_value(None), "depends_on": [task_id]}
    [(_, reply)] = rig.step((C, Kind.SUBMIT, {"queue": "Other", "tasks": [child]}))
    [child_id] = reply.body["data"]["ids"]
    [t] = delivered(rig.hello(W1, ["Q"], 1), W1)
    rig.step((C, Kind.WAIT, {"id": task_id, "timeout_s": 60.0}))
    # When its lease runs out: it is dead, the waiter is told so, and the dependant is unreachable.
    rig.advance(6.5)
    out = rig.step((W1, Kind.HEARTBEAT, {}))
    assert [f.body["data"]["state"] for i, f in out if i == C] == ["dead"]
    # And then its complete arrives late, under the same token
    done = {"id": task_id, "token": t["token"], "outcome": "complete", "result": encode_value("late")}
    [(_, reply)] = rig.step((W1, Kind.RESULTS, {"results": [done]}))
    # Then it is refused as stale, and nothing contradicts what the waiter and the dependant saw.
    assert reply.body["data"]["accepted"] == []
    assert [code for _, code, _ in reply.body["data"]["refused"]] == [ErrorCode.STALE_LEASE]
    parent, dependant = rig.store.get_task(task_id), rig.store.get_task(child_id)
    assert parent is not None and parent.state == "dead" and rig.broker.queues.count("Q", "dead") == 1
    assert dependant is not None and dependant.state == "unreachable"


@pytest.mark.parametrize(
    ("kind", "body", "code"),
    [
        (Kind.TASK_LIST, {"limit": 5000}, ErrorCode.BAD_FIELD),
        (Kind.CRON_ADD, {"name": "n", "cron": "* * * * *", "type": "t", "payload": b"x" * (2 << 20), "queue": "Q"},
         ErrorCode.TOO_LARGE),
        (Kind.CRON_GET, {"name": "nope"}, ErrorCode.UNKNOWN_SCHEDULE),
    ],
)  # fmt: skip
def test_admin_requests_out_of_bounds_are_refused(rig: Rig, kind: Kind, body: dict[str, Any], code: ErrorCode) -> None:
    [(_, reply)] = rig.step((C, kind, body))
    assert reply.kind is Kind.ERROR and reply.body["code"] == code


def test_a_refused_submit_leaves_no_queue_behind(rig: Rig) -> None:
    # Given a task id that exists, When a SUBMIT to a new queue reuses it, Then the queue is not created.
    [task_id] = rig.submit("Q", 1)
    dup = {"type": "t", "payload": encode_value(1), "id": task_id}
    [(_, reply)] = rig.step((C, Kind.SUBMIT, {"queue": "NEWQ", "tasks": [dup]}))
    assert reply.body["code"] == ErrorCode.DUPLICATE
    assert "NEWQ" not in rig.broker.queues and all(q.name != "NEWQ" for q in rig.store.queues())


def test_one_bad_outcome_is_refused_alone_and_the_rest_of_the_batch_applies(rig: Rig) -> None:
    # Given three leases of one worker and more tasks waiting.
    rig.submit("Q", 6)
    leased = delivered(rig.hello(W1, ["Q"], 3), W1)
    a, b, c = leased
    # When one RESULTS holds a good complete, a fail with an infinite retry delay, an item that is
    # not a map, a result over the size limit, and a good fail, with credit for two more
    items: list[Any] = [
        {"id": a["id"], "token": a["token"], "outcome": "complete", "result": encode_value("ok")},
        {"id": b["id"], "token": b["token"], "outcome": "fail", "retry_in_s": float("inf")},
        "not a map",
        {
            "id": b["id"],
            "token": b["token"],
            "outcome": "complete",
            "result": b"x" * (rig.broker.limits.max_payload_bytes + 1),
        },
        {"id": c["id"], "token": c["token"], "outcome": "fail", "error": "boom"},
    ]
    out = rig.step((W1, Kind.RESULTS, {"results": items, "credit": 2}))
    # Then the good ones are applied, each bad one is refused with its own code, and the credit counts.
    [reply] = [f for i, f in out if i == W1 and f.kind is Kind.REPLY]
    assert reply.body["data"]["accepted"] == [a["id"], c["id"]]
    refused = [(task_id, code) for task_id, code, _ in reply.body["data"]["refused"]]
    assert refused == [(b["id"], ErrorCode.BAD_FIELD), ("", ErrorCode.BAD_FIELD), (b["id"], ErrorCode.TOO_LARGE)]
    assert len(delivered(out, W1)) == 2
    rows = [rig.store.get_task(t["id"]) for t in leased]
    assert [(r.state, r.tries) for r in rows if r is not None] == [("complete", 1), ("active", 1), ("active", 2)]


def test_credit_beyond_the_workers_processes_and_prefetch_is_refused(rig: Rig) -> None:
    # Given a worker of 2 processes holding 2 leases, with the rest of its bound as credit
    rig.submit("Q", 2)
    most = 2 * 65
    assert len(delivered(rig.hello(W1, ["Q"], 2), W1)) == 2
    assert rig.step((W1, Kind.CREDIT, {"n": most - 2})) == []
    # When it asks for one more, or for millions, Then each is refused, and its credit is unchanged.
    for n in (1, 10**9):
        [(_, error)] = rig.step((W1, Kind.CREDIT, {"n": n}))
        assert error.kind is Kind.ERROR and error.body["code"] == ErrorCode.BAD_FIELD
        assert "more than 130" in error.body["message"]
    worker = rig.broker.workers.get(W1)
    assert worker is not None and worker.credit == most - 2
    # And a HELLO announcing more processes than a worker may have is refused.
    body = {"worker_id": "w2", "host": "h", "pid": 1, "procs": 10**6, "queues": ["Q"]}
    [(_, error)] = rig.step((W2, Kind.HELLO, body))
    assert error.kind is Kind.ERROR and error.body["code"] == ErrorCode.BAD_FIELD


def test_an_acknowledged_cancel_survives_a_broker_restart(rig: Rig, tmp_path: Path) -> None:
    # Given a running task whose cancel was acknowledged, and a broker that dies before the
    # CANCEL reaches the worker (the step's sends are simply never made).
    [task_id] = rig.submit("Q", 1)
    [t] = delivered(rig.hello(W1, ["Q"], 1), W1)
    out = rig.step((C, Kind.CANCEL, {"id": task_id}))
    assert [f.kind for i, f in out if i == C] == [Kind.REPLY]
    rig.store.close()
    # When a new broker opens the same file and the worker says hello again.
    rig.store = Store(str(tmp_path / "core.db"))
    rig.broker = Broker(rig.store, rig.broker.config, rig.now)
    hello = encode(Kind.HELLO, 99, {"worker_id": "w1", "host": "h", "pid": 1, "procs": 1, "queues": ["Q"]})
    out = [(o.ident, decode([o.data], validate=False)) for o in rig.broker.step([[W1, hello]], rig.now)]
    # Then the worker is told to cancel it again, after its welcome, under the lease's token.
    kinds = [f.kind for i, f in out if i == W1 and f.kind is not Kind.HEARTBEAT]
    assert kinds == [Kind.REPLY, Kind.CANCEL]
    cancel = next(f for _, f in out if f.kind is Kind.CANCEL)
    assert cancel.body == {"id": task_id, "token": t["token"]}
    # And the try its worker reports as killed ends the task terminated, not retried.
    killed = {"id": task_id, "token": t["token"], "outcome": "fail", "error": "killed", "retry_in_s": 0.0}
    rig.step((W1, Kind.RESULTS, {"results": [killed]}))
    row = rig.store.get_task(task_id)
    assert row is not None and row.state == "terminated"
    assert rig.store.cancels() == []


@pytest.mark.parametrize("version", [3, 4, 5, 6])
def test_an_older_schema_file_is_upgraded_in_place(tmp_path: Path, version: int) -> None:
    # Given a file as schema 3 (no cancels table, no queues.backoff_s) or 4 (no backoff_s) left it.
    path = tmp_path / "old.db"
    Store(str(path)).close()
    db = sqlite3.connect(path)
    if version == 3:
        db.execute("DROP TABLE cancels")
    if version < 5:
        db.execute("ALTER TABLE queues DROP COLUMN backoff_s")
    if version < 6:
        db.execute("ALTER TABLE tasks DROP COLUMN signature")
    db.execute("ALTER TABLE tasks DROP COLUMN owner")
    db.execute(
        "INSERT INTO queues (name, max_concurrent, max_run_time_s, max_tries, created_at, retention_s, dead_max, "
        "dead_retention_s) VALUES ('q', 1, 60, 1, 0, 60, 1, 60)"
    )
    db.execute(f"PRAGMA user_version={version}")
    db.commit()
    db.close()
    # When this version opens it, Then it is brought up to date, its queues with the default backoff.
    store = Store(str(path))
    try:
        assert store.cancels() == []
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == 7
        assert {"signature", "owner"} <= {r[1] for r in store.db.execute("PRAGMA table_info(tasks)")}
        assert [q.backoff_s for q in store.queues()] == [1.0]
    finally:
        store.close()


def test_a_silent_workers_tasks_go_back_only_after_the_lease_bound_and_margin(rig: Rig) -> None:
    # Given a running task (heartbeat 10 s: the lease bound is 30 s, the margin 1 s).
    [task_id] = rig.submit("Q", 1)
    delivered(rig.hello(W1, ["Q"], 1), W1)
    assert rig.broker.config.silent_after_s == 31.0
    # When its worker stays silent for the bound, Then the task is still its own.
    rig.advance(30.5)
    rig.step()
    row = rig.store.get_task(task_id)
    assert row is not None and row.state == "active"
    # And past the bound plus the margin it goes back.
    rig.advance(1.0)
    rig.step()
    row = rig.store.get_task(task_id)
    assert row is not None and row.state == "retry" and "was lost" in (row.last_error or "")


def test_an_unreachable_workers_tasks_wait_out_the_bound_and_return_if_it_registers_again(rig: Rig) -> None:
    # Given two running tasks on a worker whose connection the broker finds gone (a send fails).
    first, second = rig.submit("Q", 2)
    held = {t["id"]: t for t in delivered(rig.hello(W1, ["Q"], 2), W1)}
    rig.broker.undeliverable(_outgoing_to(W1))
    rig.step()
    # Then its tasks stay leased: its children may still run them until the bound.
    rig.advance(20.0)
    rig.step()
    assert {rig.store.get_task(t).state for t in (first, second)} == {"active"}  # type: ignore[union-attr]
    # When it registers again within the bound, Then it holds them still.
    body = {"worker_id": "w1", "host": "h", "pid": 1, "procs": 2, "queues": ["Q"]}
    hello = encode(Kind.HELLO, 99, body)
    [welcome] = [decode([o.data], validate=False) for o in rig.broker.step([[W1, hello]], rig.now) if o.ident == W1]
    assert welcome.body["data"]["running"] == sorted(held)
    rig.advance(20.0)
    rig.step((W1, Kind.HEARTBEAT, {}))
    assert rig.store.get_task(first).state == "active"  # type: ignore[union-attr]
    # And when its connection goes again, its tasks go back once the bound has passed since its last word.
    rig.broker.undeliverable(_outgoing_to(W1))
    rig.step()
    rig.advance(30.5)
    rig.step()
    assert rig.store.get_task(first).state == "active"  # type: ignore[union-attr]
    rig.advance(1.0)
    rig.step()
    row = rig.store.get_task(first)
    assert row is not None and row.state == "retry" and "unreachable" in (row.last_error or "")


def test_a_heartbeat_with_a_corr_is_answered_and_one_without_is_not(rig: Rig) -> None:
    rig.hello(W1, ["Q"], 1)
    assert _raw_step(rig, W1, encode(Kind.HEARTBEAT, 7, {})) == [(W1, Kind.REPLY, 7, {"data": {}})]
    assert _raw_step(rig, W1, encode(Kind.HEARTBEAT, 0, {})) == []
    # A worker the broker does not know is told so, not confirmed.
    [(_, error)] = rig.step((W2, Kind.HEARTBEAT, {}))
    assert error.kind is Kind.ERROR and error.body["code"] == ErrorCode.NOT_REGISTERED


def _raw_step(rig: Rig, ident: bytes, data: bytes) -> list[tuple[bytes, Kind, int, dict[str, Any]]]:
    """One message as sent (its own corr), and what comes back but the broker's heartbeats."""
    out = [(o.ident, decode([o.data], validate=False)) for o in rig.broker.step([[ident, data]], rig.now)]
    return [(i, f.kind, f.corr, f.body) for i, f in out if f.kind is not Kind.HEARTBEAT]


def _outgoing_to(ident: bytes) -> Outgoing:
    """A message the server could not send to `ident` (its connection is gone)."""
    return Outgoing(ident, encode(Kind.HEARTBEAT, 0, {}))


def test_memory_follows_the_leases_held_not_the_leases_ever_made(rig: Rig) -> None:
    # Given one long-running task (its lease ends in an hour) on W1,
    rig.step((C, Kind.QUEUE_CONFIGURE, {"name": "Q", "max_concurrent": 2000}))
    rig.submit("Q", 1)
    delivered(rig.hello(W1, ["Q"], 1), W1)
    rig.step((W2, Kind.HELLO, {"worker_id": "w2", "host": "h", "pid": 2, "procs": 16, "queues": ["Q"]}))
    # When 10,000 later tasks are leased and completed by W2, and as many WAITs answered,
    for _ in range(10):
        ids = rig.submit("Q", 1000)
        rig.step(*[(C, Kind.WAIT, {"id": i, "timeout_s": 3600}) for i in ids])
        tasks = delivered(rig.step((W2, Kind.CREDIT, {"n": 1000})), W2)
        assert len(tasks) == 1000
        done = [{"id": t["id"], "token": t["token"], "outcome": "complete", "result": b"\xc0"} for t in tasks]
        rig.step((W2, Kind.RESULTS, {"results": done}))
    # Then the expiry heaps hold about what is live now, not an entry per lease or wait ever made.
    assert len(rig.broker.leases) == 1 and len(rig.broker.waiters) == 0
    assert rig.broker.leases.heap_size() <= 2 + 1024
    assert rig.broker.waiters.heap_size() <= 1024 + 1000


def test_idle_queues_cost_no_query_and_ended_tasks_are_trimmed_when_due(rig: Rig) -> None:
    # Given 300 queues a worker named once and never used, and one queue whose task completed.
    rig.hello(W1, [f"idle-{i}" for i in range(300)], 1)
    rig.step((C, Kind.QUEUE_CONFIGURE, {"name": "Q", "retention_s": 60.0}))
    rig.submit("Q", 1)
    out = rig.hello(W2, ["Q"], 1)
    (t,) = delivered(out, W2)
    done = {"id": t["id"], "token": t["token"], "outcome": "complete"}
    rig.step((W2, Kind.RESULTS, {"results": [done], "credit": 1}))
    statements: list[str] = []
    rig.store.db.set_trace_callback(statements.append)
    try:
        # When retention passes run for 50 s (the task is kept for 60 s).
        for _ in range(50):
            rig.advance(1.0)
            rig.step()
        # Then neither the idle queues nor the one whose task is not due cost a query.
        queries = [s for s in statements if "finished_at" in s]
        assert len(queries) <= 3, queries  # the first pass learns when Q's task falls due
        # And once it is due, it is deleted.
        statements.clear()
        rig.advance(11.0)
        rig.step()
        assert rig.broker.queues.count("Q", "complete") == 0
        assert rig.store.get_task(t["id"]) is None
    finally:
        rig.store.db.set_trace_callback(None)


def test_a_step_whose_begin_fails_costs_that_step_only(rig: Rig, tmp_path: Path) -> None:
    # Given another process holding the database's write lock (a backup script, an operator's shell).
    rig.store.db.execute("PRAGMA busy_timeout=50")
    other = sqlite3.connect(tmp_path / "core.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    # When a step cannot BEGIN, Then its request gets INTERNAL naming the cause, and the broker goes on.
    out = rig.step((C, Kind.SUBMIT, {"queue": "Q", "tasks": [{"type": "t", "payload": encode_value(1)}]}))
    assert [(f.kind, f.body["code"]) for _, f in out] == [(Kind.ERROR, ErrorCode.INTERNAL)]
    assert "locked" in out[0][1].body["message"]
    other.execute("ROLLBACK")
    other.close()
    # And once the lock is gone, the next step is applied, with nothing of the failed one.
    assert len(rig.submit("Q", 1)) == 1
    assert rig.broker.queues.count("Q", "new") == 1


def test_a_queue_whose_dispatch_fails_waits_while_the_others_are_served(rig: Rig, tmp_path: Path) -> None:
    # Given a task in queue A whose stored row cannot be read (its parents list is not msgpack).
    [(_, reply)] = rig.step((C, Kind.SUBMIT, {"queue": "P", "tasks": [{"type": "t", "payload": encode_value(0)}]}))
    [parent] = reply.body["data"]["ids"]
    (t,) = delivered(rig.hello(W2, ["P"], 1), W2)
    rig.step((W2, Kind.RESULTS, {"results": [{"id": t["id"], "token": t["token"], "outcome": "complete"}]}))
    child = {"type": "t", "payload": encode_value(0), "depends_on": [parent], "load_results": True}
    rig.step((C, Kind.QUEUE_PAUSE, {"name": "A"}), (C, Kind.SUBMIT, {"queue": "A", "tasks": [child]}))
    with sqlite3.connect(tmp_path / "core.db") as db:
        db.execute("UPDATE tasks SET parents = x'c1' WHERE queue = 'A'")
    rig.submit("B", 3)
    rig.step((C, Kind.QUEUE_RESUME, {"name": "A"}))
    # When a worker serving A first, then B, asks for work (and a GET arrives in the same step).
    out = rig.hello(W1, ["A", "B"], 4) + rig.step((C, Kind.GET, {"id": parent}))
    out += rig.step()
    # Then the request is answered, B's tasks are handed out, and A's waits (the broker is serving).
    assert any(f.kind is Kind.REPLY and f.body["data"].get("id") == parent for _, f in out)
    assert sorted(t["queue"] for t in delivered(out, W1)) == ["B", "B", "B"]
    assert rig.broker.queues.count("A", "new") == 1 and rig.broker.queues.count("B", "active") == 3
    # And once the row is mended, A is tried again after the hold and its task goes out.
    with sqlite3.connect(tmp_path / "core.db") as db:
        db.execute("UPDATE tasks SET parents = ? WHERE queue = 'A'", (encode_value([parent]),))
    rig.advance(1.1)
    (late,) = delivered(rig.step(), W1)
    assert late["queue"] == "A" and parent in late["dependency_results"]


def test_failing_timers_are_undone_and_logged_and_the_broker_serves(rig: Rig, tmp_path: Path) -> None:
    # Given a schedule whose stored expression was damaged, read by a restarted broker.
    body = {"name": "bad", "cron": "* * * * *", "type": "r", "payload": encode_value(1), "queue": "Q"}
    rig.step((C, Kind.CRON_ADD, body))
    with sqlite3.connect(tmp_path / "core.db") as db:
        db.execute("UPDATE schedules SET cron = 'not a cron'")
    rig.broker = Broker(rig.store, rig.broker.config, rig.now)
    # When it falls due, Then firing it fails, nothing of it is kept, and a submit in the step is applied.
    rig.advance(61)
    assert len(rig.submit("Q", 1)) == 1
    assert rig.broker.queues.count("Q", "new") == 1
    assert rig.store.state_counts() == {("Q", "new"): 1}
    # And the broker goes on serving: the next steps answer, the timers wait their hold, then retry.
    assert len(rig.submit("Q", 1)) == 1
    rig.advance(1.1)
    assert len(rig.submit("Q", 1)) == 1
    assert rig.broker.queues.count("Q", "new") == 3 == sum(rig.store.state_counts().values())


def test_one_step_builds_a_bounded_number_of_rows(rig: Rig) -> None:
    # Given a broker whose batches hold at most 5 items (so a step takes about 2 batches' worth).
    rig.broker.limits = Limits(max_batch=5)
    tasks = [{"type": "t", "payload": encode_value(i)} for i in range(5)]
    inbox = iter([[C, encode(Kind.SUBMIT, i + 1, {"queue": "Q", "tasks": tasks})] for i in range(4)])
    # When four full SUBMITs wait, Then one step takes two of them and leaves two waiting.
    rig.broker.step(inbox, rig.now)
    assert rig.broker.queues.count("Q", "new") == 10
    assert len(list(inbox)) == 2
    # And dispatch leases at most one batch per step, and asks to step again at once while more is ready.
    out = rig.hello(W1, ["Q"], 10)
    assert len(delivered(out, W1)) == 5
    assert rig.broker.wake_in(rig.now) == 0.0
    assert len(delivered(rig.step(), W1)) == 5
    assert rig.broker.queues.count("Q", "active") == 10


def test_a_try_that_gets_no_answer_backs_off_doubling_per_try(rig: Rig) -> None:
    # Given a queue whose unanswered tries back off 2 s, then 4 s (leases of 5 s + 1 s grace).
    rig.step((C, Kind.QUEUE_CONFIGURE, {"name": "Q", "max_run_time_s": 5.0, "backoff_s": 2.0}))
    [task_id] = rig.submit("Q", 1)
    assert len(delivered(rig.hello(W1, ["Q"], 1), W1)) == 1
    gaps = []
    for _ in range(2):
        # When a lease runs out with no answer, Then the task is given out again only after the backoff.
        rig.advance(6.0)
        assert delivered(rig.step((W1, Kind.HEARTBEAT, {}), (W1, Kind.CREDIT, {"n": 1})), W1) == []
        waited = 0.0
        while not delivered(rig.step((W1, Kind.HEARTBEAT, {})), W1):
            rig.advance(0.5)
            waited += 0.5
        gaps.append(waited)
    assert gaps == [2.0, 4.0]
    row = rig.store.get_task(task_id)
    assert row is not None and row.tries == 3


def test_parked_waits_and_registered_workers_are_bounded_with_a_clear_error(tmp_path: Path) -> None:
    # Given a broker that may park 2 WAITs and register 1 worker.
    rig = Rig(tmp_path / "limits.db")
    try:
        rig.broker = Broker(
            rig.store, BrokerConfig(db=str(tmp_path / "limits.db"), max_waits=2, max_workers=1), rig.now
        )
        [task_id] = rig.submit("Q", 1)
        out = rig.step(*[(C, Kind.WAIT, {"id": task_id, "timeout_s": 60.0})] * 3)
        # When a third WAIT comes, Then it alone is refused, saying what to do; the two stay parked.
        assert [(f.kind, f.body.get("code")) for _, f in out] == [(Kind.ERROR, ErrorCode.TOO_LARGE)]
        assert "--max-waits" in out[0][1].body["message"] and len(rig.broker.waiters) == 2
        # And a second worker cannot register, while the first may say HELLO again.
        assert Kind.ERROR not in {f.kind for _, f in rig.hello(W1, ["Q"], 1)}  # (the rig hides welcomes)
        refused = rig.hello(W2, ["Q"], 1)[0][1]
        assert refused.kind is Kind.ERROR and "--max-workers" in refused.body["message"]
        assert Kind.ERROR not in {f.kind for _, f in rig.hello(W1, ["Q"], 1)}
        assert len(rig.broker.workers) == 1
    finally:
        rig.store.close()
