"""A step that the database undoes is undone in memory too, exactly, by the journal: nothing is read
back from SQLite, and the view is the one a broker freshly started on the same file would have."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ajq.broker.core import Broker
from ajq.broker.journal import Journal, JournaledDict
from ajq.broker.queues import QueueBook
from ajq.broker.store import QueueRow, Store
from ajq.protocol import ErrorCode, Kind, decode, encode, encode_value
from tests.test_broker_core import W1, W2, C, Rig, delivered

W3 = b"w3"


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path / "core.db")
    yield r
    r.store.close()


def stored_view(b: Broker) -> dict[str, Any]:
    """What the broker holds in memory that the database also holds."""
    return {
        "queues": {q.name: (q, b.queues.counts(q.name)) for q in b.queues},
        "leases": sorted((lease.task_id, lease.token, lease.worker, lease.tries) for lease in _leases(b)),
        "cancelled": sorted(lease.task_id for lease in _leases(b) if b.leases.cancelled(lease.task_id)),
        "schedules": dict(b.schedules.items()),
    }


def full_view(b: Broker) -> dict[str, Any]:
    """All of it: with lease expiries, the workers (credit, tasks held), departures and parked waits."""
    workers = {w.ident: (w.credit, sorted(b.leases.held_by(w.ident))) for w in b.workers}
    expiries = sorted((lease.task_id, lease.expires) for lease in _leases(b))
    return {**stored_view(b), "expiries": expiries, "workers": workers, "waits": len(b.waiters)}


def _leases(b: Broker) -> list[Any]:
    return [lease for w in (W1, W2, W3) for lease in b.leases.of_worker(w)]


def test_a_step_that_rolls_back_leaves_memory_as_the_disk_without_reading_it_back(rig: Rig, tmp_path: Path) -> None:
    # Given a broker holding a bit of everything: leases on two workers (one with a cancel acknowledged),
    # a parked WAIT, a schedule that fires every second, a blocked task, tasks waiting for credit.
    rig.step((C, Kind.QUEUE_CONFIGURE, {"name": "Q", "max_run_time_s": 30.0}))
    q_tasks = rig.submit("Q", 6)
    mine = delivered(rig.hello(W1, ["Q"], 2), W1)
    theirs = delivered(rig.hello(W2, ["Q"], 2), W2)
    assert len(mine) == len(theirs) == 2
    rig.step((C, Kind.CANCEL, {"id": mine[1]["id"]}), (C, Kind.WAIT, {"id": theirs[0]["id"], "timeout_s": 600.0}))
    cron = {"name": "tick", "cron": "* * * * * *", "type": "t", "payload": encode_value(0), "queue": "R"}
    [parent] = rig.submit("R", 1)
    child = {"type": "t", "payload": encode_value(1), "depends_on": [parent]}
    rig.step((C, Kind.CRON_ADD, cron), (C, Kind.SUBMIT, {"queue": "R", "tasks": [child]}))
    before = full_view(rig.broker)
    assert before["cancelled"] == [mine[1]["id"]] and before["waits"] == 1
    # And the database set to end the whole transaction when the schedule fires (as a failing disk can).
    for op in ("INSERT", "UPDATE"):
        rig.store.db.execute(
            f"CREATE TEMP TRIGGER boom_{op} BEFORE {op} ON schedules BEGIN SELECT RAISE(ROLLBACK, 'injected'); END"
        )
    statements: list[str] = []
    rig.store.db.set_trace_callback(statements.append)
    # When, 32 s on, one step completes a task and gives credit, submits to a new queue, configures and
    # pauses one, cancels a waiting task, parks a WAIT, registers a worker; its timers find W2 silent
    # past the bound and W1's leases run out; and then firing the schedule fails.
    rig.advance(32.0)
    done = {"id": mine[0]["id"], "token": mine[0]["token"], "outcome": "complete", "result": encode_value(1)}
    hello3 = {"worker_id": "w3", "host": "h", "pid": 3, "procs": 1, "queues": ["Q"]}
    out = rig.step(
        (W1, Kind.RESULTS, {"results": [done], "credit": 1}),
        (C, Kind.SUBMIT, {"queue": "NEW", "tasks": [{"type": "t", "payload": encode_value(2)}]}),
        (C, Kind.QUEUE_CONFIGURE, {"name": "R", "max_concurrent": 7}),
        (C, Kind.QUEUE_PAUSE, {"name": "R"}),
        (C, Kind.CANCEL, {"id": q_tasks[5]}),
        (C, Kind.WAIT, {"id": q_tasks[4], "timeout_s": 600.0}),
        (W3, Kind.HELLO, hello3),
    )
    # Then every request is told nothing was changed.
    assert {f.body.get("code") for _, f in out if f.corr} == {ErrorCode.INTERNAL}
    # And memory is as before the step, and as a broker started afresh on the file sees it, but for
    # what stands whatever the database does: the credit W1 gave, and the WAIT (a read, answered
    # again from the disk: its task has not ended, so it is parked).
    w1_credit, w1_tasks = before["workers"][W1]
    assert full_view(rig.broker) == {
        **before,
        "waits": 2,
        "workers": {**before["workers"], W1: (w1_credit + 1, w1_tasks)},
    }
    assert stored_view(rig.broker) == stored_view(Broker(Store(str(tmp_path / "core.db")), rig.broker.config, rig.now))
    # And none of it was read back from the database.
    assert not [s for s in statements if "GROUP BY" in s or "state = 'active'" in s]
    # When the database works again, Then the next step does what the failed one could not: W2 is
    # still known (not forgotten with its leases until they ran out), so its tasks go back now.
    rig.store.db.set_trace_callback(None)
    rig.store.db.execute("DROP TRIGGER boom_INSERT")
    rig.store.db.execute("DROP TRIGGER boom_UPDATE")
    rig.step()
    for t in theirs:
        row = rig.store.get_task(t["id"])
        assert row is not None and row.state == "retry" and "was lost" in (row.last_error or "")
    assert stored_view(rig.broker) == stored_view(Broker(Store(str(tmp_path / "core.db")), rig.broker.config, rig.now))


def test_a_refused_request_undoes_what_it_changed_in_memory(rig: Rig) -> None:
    # Given a unique task held in queue A.
    unique = {"type": "t", "payload": encode_value(0), "unique_for_s": 3600.0}
    rig.step((C, Kind.SUBMIT, {"queue": "A", "tasks": [unique]}))
    before = full_view(rig.broker)
    # When a batch to a new queue B holds a fresh task and one that the unique lock refuses.
    fresh = {"type": "t", "payload": encode_value(1), "unique_for_s": 3600.0}
    [(_, error)] = rig.step((C, Kind.SUBMIT, {"queue": "A", "tasks": [fresh, unique]}))
    # Then it is refused, and neither its counts nor anything else it touched stays in memory.
    assert error.body["code"] == ErrorCode.DUPLICATE
    assert full_view(rig.broker) == before


def test_the_journal_plays_back_to_a_mark_newest_first() -> None:
    # Given a queue book and a dict sharing one journal, with changes before and after a mark.
    journal = Journal()
    queues, names = QueueBook(journal), JournaledDict[str, int](journal)
    row = QueueRow("Q", 1, 1.0, 1, False, 0.0, 1.0, 1, 1.0, 1.0)
    queues.put(row)
    queues.transition("Q", None, "new", 3)
    names["a"] = 1
    mark = journal.mark()
    queues.transition("Q", "new", "active", 2)
    names["a"] = 2
    names["b"] = 3
    del names["a"]
    queues.drop("Q")
    # When it rolls back to the mark, Then what came after is undone and what came before stands.
    journal.rollback(mark)
    assert queues.get("Q") == row and queues.counts("Q") == {"new": 3}
    assert dict(names.items()) == {"a": 1}
    # And a commit makes the rest final: a rollback then changes nothing.
    journal.commit()
    journal.rollback()
    assert queues.counts("Q") == {"new": 3} and dict(names.items()) == {"a": 1}


def test_a_one_task_submit_refused_in_a_step_changes_nothing_and_the_others_apply(rig: Rig) -> None:
    # Given queue Q holding task "a" (one-task submits to a queue that exists take no savepoint).
    one = {"type": "t", "payload": encode_value(0)}
    rig.step((C, Kind.SUBMIT, {"queue": "Q", "tasks": [{**one, "id": "a"}]}))
    # When one step holds a submit of "a" again between two good ones.
    out = rig.step(
        (C, Kind.SUBMIT, {"queue": "Q", "tasks": [{**one, "id": "b"}]}),
        (C, Kind.SUBMIT, {"queue": "Q", "tasks": [{**one, "id": "a"}]}),
        (C, Kind.SUBMIT, {"queue": "Q", "tasks": [{**one, "id": "c"}]}),
    )
    # Then only the duplicate is refused, and memory and disk agree on three tasks.
    assert [f.body.get("code") for _, f in out] == [None, ErrorCode.DUPLICATE, None]
    assert rig.broker.queues.counts("Q") == {"new": 3} and rig.store.state_counts() == {("Q", "new"): 3}


def test_a_step_of_reads_opens_no_transaction(rig: Rig) -> None:
    # Given a registered worker and a task (its first steps write).
    [task_id] = rig.submit("Q", 1)
    rig.hello(W1, ["R"], 1)
    statements: list[str] = []
    rig.store.db.set_trace_callback(statements.append)
    # When a step holds only reads: a heartbeat, a GET and a queue listing.
    out = rig.step((W1, Kind.HEARTBEAT, {}), (C, Kind.GET, {"id": task_id}), (C, Kind.QUEUE_LIST, {}))
    # Then each is answered, and nothing began a write transaction (nothing to fsync, no write lock).
    assert [f.kind for _, f in out] == [Kind.REPLY, Kind.REPLY, Kind.REPLY]
    assert not [s for s in statements if s.startswith(("BEGIN", "COMMIT", "SAVEPOINT"))]
    # And a write in the next step still opens one.
    rig.submit("Q", 1)
    assert [s for s in statements if s.startswith("BEGIN")]


def test_the_broker_heartbeats_only_workers_it_has_not_heard_from(rig: Rig) -> None:
    # Given two registered workers (heartbeat 10 s), and one of them heard from just now.
    rig.hello(W1, ["Q"], 1)
    rig.hello(W2, ["Q"], 1)
    rig.advance(10.5)
    out = rig.broker.step([[W1, encode(Kind.HEARTBEAT, 0, {})]], rig.now)
    # Then the broker's own heartbeat goes to the silent one only: the other knows we are alive.
    beats = [o.ident for o in out if decode([o.data], validate=False).kind is Kind.HEARTBEAT]
    assert beats == [W2]
