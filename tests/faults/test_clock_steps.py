"""The wall clock stepped an hour back and an hour forward under a running broker (a moved clock
fed through the broker's SteadyClock): no lease ends early, no schedule fires twice or in a storm,
and no task waits an hour it should not."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from ajq.broker.config import BrokerConfig
from ajq.broker.core import Broker
from ajq.broker.store import Store
from ajq.protocol import Kind, decode, encode, encode_value
from ajq.protocol.clock import Now, SteadyClock
from tests.faults.ledger import Figures

W, C = b"w1", b"\x00client"


class MovedClock:
    """The system clock, by hand: monotonic time only ever advances; wall time may be stepped."""

    def __init__(self) -> None:
        self.mono, self.wall = 1000.0, 1_700_000_000.0

    def now(self) -> Now:
        return Now(self.mono, self.wall)

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


class Cluster:
    """A broker stepped by hand on a temp database, reading time through SteadyClock."""

    def __init__(self, path: Path) -> None:
        self.system = MovedClock()
        self.clock = SteadyClock(self.system)
        self.store = Store(str(path))
        self.broker = Broker(self.store, BrokerConfig(db=str(path), heartbeat_s=10.0), self.clock.now())
        self.corr = 0
        self.delivered: list[dict[str, object]] = []

    def step(self, *msgs: tuple[bytes, Kind, dict[str, object]]) -> list[dict[str, object]]:
        inbox = []
        for ident, kind, body in msgs:
            self.corr += 1
            inbox.append([ident, encode(kind, self.corr, body)])
        out = [decode([o.data], validate=False) for o in self.broker.step(inbox, self.clock.now())]
        replies = [f.body.get("data") for f in out if f.kind is Kind.REPLY]
        self.delivered += [t for f in out if f.kind is Kind.DELIVER for t in f.body["tasks"]]
        return replies

    def run_for(self, seconds: float, every: float = 1.0) -> None:
        """Let `seconds` pass on the monotonic clock, the worker beating and stepping every `every`."""
        for _ in range(round(seconds / every)):
            self.system.advance(every)
            self.step((W, Kind.HEARTBEAT, {}))


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path / "clock.db")
    yield c
    c.store.close()


@pytest.mark.parametrize("step_s", [-3600.0, 3600.0], ids=["back-1h", "forward-1h"])
def test_a_wall_clock_step_ends_no_lease_fires_no_storm_and_strands_no_task(cluster: Cluster, step_s: float) -> None:
    # Given a worker running a task with a lease of 10 minutes, a schedule every minute, and a task
    # failing with a retry due in 5 s.
    cluster.step((C, Kind.QUEUE_CONFIGURE, {"name": "Q", "max_run_time_s": 600.0}))
    cron = {"name": "every-minute", "cron": "* * * * *", "type": "tick", "payload": encode_value(0), "queue": "T"}
    cluster.step((C, Kind.CRON_ADD, cron))
    [submitted] = cluster.step((C, Kind.SUBMIT, {"queue": "Q", "tasks": [{"type": "long", "payload": b"\x00"}] * 2}))
    hello = {"worker_id": "w1", "host": "h", "pid": 1, "procs": 4, "queues": ["Q"]}
    cluster.step((W, Kind.HELLO, hello), (W, Kind.CREDIT, {"n": 2}))
    running, failing = cluster.delivered
    fail = {"id": failing["id"], "token": failing["token"], "outcome": "fail", "retry_in_s": 5.0}
    cluster.step((W, Kind.RESULTS, {"results": [fail], "credit": 1}))
    # When the wall clock is stepped by an hour, and 2 minutes pass.
    cluster.system.wall += step_s
    cluster.run_for(120)
    # Then the running lease still holds, the retry ran within its delay (twice it, at most, while
    # the steady clock catches up), and the schedule fired about once a minute, not 60 times.
    fired = cluster.broker.queues.count("T", "new")
    retried = [t for t in cluster.delivered[2:] if t["id"] == failing["id"]]
    info = cluster.step((C, Kind.GET, {"id": running["id"]}))[0]
    assert isinstance(info, dict)
    lost = int(info["state"] != "active") + int(not retried)
    figures = Figures(f"clock-step-{'back' if step_s < 0 else 'forward'}", f"wall clock {step_s:+.0f}s",
                      len(submitted["ids"]), lost, 0, 0, 0, None)  # fmt: skip
    figures.report()
    print(f"clock step {step_s:+.0f}s: {fired} schedule runs in 120 s, retry delivered: {bool(retried)}")
    assert info["state"] == "active" and info["tries"] == 1
    assert retried and retried[0]["tries"] == 2
    assert 1 <= fired <= 3
    # And a task submitted now is handed out at once.
    [fresh] = cluster.step((C, Kind.SUBMIT, {"queue": "Q", "tasks": [{"type": "now", "payload": b"\x00"}]}))
    cluster.step((W, Kind.CREDIT, {"n": 1}))
    assert any(t["id"] == fresh["ids"][0] for t in cluster.delivered)


def test_steady_wall_time_never_goes_back_and_catches_up_at_half_speed() -> None:
    system = MovedClock()
    clock = SteadyClock(system)
    start = clock.now().wall
    # When the system clock is stepped 10 s back, Then steady time runs on, at half speed,
    system.wall -= 10.0
    walls = []
    for _ in range(30):
        system.advance(1.0)
        walls.append(clock.now().wall)
    assert all(b > a for a, b in itertools.pairwise(walls))
    assert walls[0] == pytest.approx(start + 0.5)
    # And once the system clock has caught up (after 20 s), it follows it again.
    assert walls[-1] == pytest.approx(system.wall)
    # And a step forward is followed at once.
    system.wall += 100.0
    assert clock.now().wall == pytest.approx(system.wall)
