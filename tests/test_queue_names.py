"""Queue names: how many may exist, and a worker told when it serves a queue nobody uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from ajq.client import ClientError
from tests.harness import Proc, start_broker, start_worker, wait_for

APP = "tests.apps.basic:router"


@pytest.mark.timeout(60)
def test_past_max_queues_a_new_name_is_refused_clearly_and_old_ones_keep_working(
    tmp_path: Path, procs: list[Proc]
) -> None:
    # Given a broker allowing 3 queues: DEFAULT and two more.
    broker = start_broker(tmp_path, "--max-queues", "3")
    try:
        c = broker.client()
        c.submit("t", None, queue="one")
        c.submit("t", None, queue="two")
        # When a third name is submitted to, Then it is refused with what to do, and nothing is made.
        with pytest.raises(ClientError, match="--max-queues") as err:
            c.submit("t", None, queue="three")
        assert "three" in str(err.value)
        assert sorted(q.name for q in c.queues()) == ["DEFAULT", "one", "two"]
        # And a worker naming a new queue cannot register: it exits with the broker's reason.
        worker = Proc(
            ["-m", "ajq.worker", "--broker", broker.endpoint, "--queue", "four", APP], tmp_path / "w.log", tmp_path
        ).start()
        procs.append(worker)
        assert worker.wait(20) == 2
        assert "--max-queues" in worker.tail()
        # And the queues that exist still take tasks; deleting one makes room.
        c.submit("t", None, queue="one")
        c.delete_queue("two", force=True)
        assert c.submit("t", None, queue="three").id
    finally:
        broker.close()


@pytest.mark.timeout(60)
def test_a_worker_serving_a_queue_nobody_uses_names_it_in_a_warning(tmp_path: Path, procs: list[Proc]) -> None:
    broker = start_broker(tmp_path)
    try:
        broker.client().submit("t", None, queue="emails")
        # When a worker serves the used queue and a misspelt one.
        worker = start_worker(broker, tmp_path, APP, queues=("emails", "emials"))
        procs.append(worker)
        # Then it warns about the misspelt one, by name, and not about the other.
        wait_for(lambda: "'emials' has never been" in worker.tail(), 10, "the warning")
        assert "'emails' has never been" not in worker.tail(100)
    finally:
        broker.close()
