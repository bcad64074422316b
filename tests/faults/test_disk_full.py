"""A full disk: submits are refused clearly, reads go on, nothing acknowledged is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from ajq import ClientError
from tests.harness import start_broker


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
