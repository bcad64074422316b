"""The router, retry policies and CPU count, without processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from ajq import RETRY_LINEAR_ONE_HOUR, RETRY_LINEAR_ONE_MINUTE, RETRY_LINEAR_TEN_MINUTES, RetryPolicy, Router
from ajq.worker.cpus import available_cpus, cgroup_quota
from ajq.worker.retry import RETRY_SIDEKIQ, by_name


def test_router_prefers_exact_then_longest_prefix_then_catch_all() -> None:
    r = Router()
    for pattern in ("email:new", "email:", "email:b", ""):
        r.add(pattern, lambda t, p=pattern: p)
    picks = {t: r.route(t)(None) for t in ("email:new", "email:bounce", "email:x", "sms")}  # type: ignore[misc,arg-type]
    assert picks == {"email:new": "email:new", "email:bounce": "email:b", "email:x": "email:", "sms": ""}


def test_router_without_catch_all_has_no_handler_for_others() -> None:
    r = Router()
    r.add("a:", lambda t: None)
    assert r.route("b") is None
    with pytest.raises(ValueError, match="registered already"):
        r.add("a:", lambda t: None)


@pytest.mark.parametrize(
    ("policy", "first", "last", "jitter"),
    [
        (RETRY_LINEAR_ONE_MINUTE, 1.0, 1.0 + 19 * 59 / 20, 0.5),
        (RETRY_LINEAR_TEN_MINUTES, 60.0, 60.0 + 19 * 540 / 20, 0.9),
        (RETRY_LINEAR_ONE_HOUR, 600.0, 600.0 + 19 * 3000 / 20, 0.9),
    ],
)
def test_linear_policies_match_asyncjobs(policy: RetryPolicy, first: float, last: float, jitter: float) -> None:
    # asyncjobs: 20 even steps from the low bound; delay = interval * jitter + random(0, interval).
    assert len(policy.intervals) == 20 and policy.jitter == jitter
    assert policy.intervals[0] == pytest.approx(first) and policy.intervals[-1] == pytest.approx(last)
    for n in (0, 5, 19, 100):
        interval = policy.intervals[min(n, 19)]
        for _ in range(50):
            assert interval * jitter <= policy.delay(n) <= interval * (1 + jitter) + 0.001


def test_sidekiq_formula_bounds() -> None:
    for n in (0, 1, 5):
        delays = {RETRY_SIDEKIQ.delay(n) for _ in range(200)}
        assert min(delays) >= n**4 + 15 and max(delays) <= n**4 + 15 + 29 * (n + 1)


def test_policy_names_and_errors() -> None:
    assert by_name("1h") is RETRY_LINEAR_ONE_HOUR
    with pytest.raises(Exception, match="use one of"):
        by_name("2h")
    with pytest.raises(Exception, match="at least one interval"):
        RetryPolicy([])


def test_cgroup_quota_is_read_from_v1_files(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("150000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_quota(tmp_path) == 1.5
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_quota(tmp_path) is None
    assert 1 <= available_cpus() <= 4096


def test_supervisor_resends_outcomes_only_when_the_broker_could_not_write() -> None:
    # Given a supervisor (not started: no processes) with two batches awaiting the broker's answer.
    from ajq.protocol import ErrorCode, Kind
    from ajq.worker.config import WorkerConfig
    from ajq.worker.retry import RETRY_DEFAULT
    from ajq.worker.supervisor import Supervisor

    sup = Supervisor(WorkerConfig(), Router(), RETRY_DEFAULT)
    item = {"id": "t", "token": 1, "outcome": "complete"}
    sup.outbox.unacked = {1: (Kind.RESULTS, [item]), 2: (Kind.RESULTS, [item])}
    # When one is refused with INTERNAL and the other with BAD_FIELD, at time 100,
    sup._on_error(1, {"code": int(ErrorCode.INTERNAL), "message": "disk full"}, 100.0)
    sup._on_error(2, {"code": int(ErrorCode.BAD_FIELD), "message": "bad"}, 100.0)
    # Then only the first is kept to be sent again, after a back-off, and neither waits any more.
    assert sup.outbox.unacked == {} and sup.outcomes.pending == []
    assert sup.outbox.resend.due(100.05) == []
    assert sup.outbox.resend.due(100.1) == [(Kind.RESULTS, [item])]
    # And a second refusal in a row waits twice as long; an accepted answer starts it over.
    assert sup.outbox.resend.refused(Kind.RESULTS, [item], 200.0) == pytest.approx(0.2)
    sup.outbox.resend.due(200.2)
    sup.outbox.resend.accepted()
    assert sup.outbox.resend.refused(Kind.RESULTS, [item], 300.0) == pytest.approx(0.1)
