"""The SQLite store: durable queues, tasks, links and schedules. All SQL of ajq lives here.

WAL mode with synchronous=FULL (by default): a commit is on disk when it returns. The broker is
the only process that opens the file; it runs every write batch in one BEGIN IMMEDIATE
transaction, with a SAVEPOINT per request so one bad request rolls back alone.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from ajq.broker.errors import StoreError
from ajq.broker.store.graph import GraphSQL
from ajq.broker.store.rows import ActiveTask, NewTask, QueueRow, ReadyTask, ScheduleRow, TaskBrief, TaskRow
from ajq.broker.store.schedules import ScheduleSQL
from ajq.broker.store.schema import ADDED_COLUMNS, SCHEMA, SCHEMA_VERSION, UPGRADES_FROM
from ajq.broker.store.tasks import TaskSQL

__all__ = ["ActiveTask", "NewTask", "QueueRow", "ReadyTask", "ScheduleRow", "Store", "TaskBrief", "TaskRow"]

QUEUE_COLUMNS = (
    "name, max_concurrent, max_run_time_s, max_tries, paused, created_at, retention_s, dead_max, dead_retention_s, "
    "backoff_s"
)


class Store(TaskSQL, GraphSQL, ScheduleSQL):
    """One connection to the broker's database. Not thread-safe; the broker loop owns it."""

    def __init__(self, path: str, synchronous: str = "FULL", max_db_mb: int | None = None) -> None:
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={synchronous}")
            self.db.execute("PRAGMA busy_timeout=5000")
            self._upgrade(self._check_version(path))
            self.db.executescript(SCHEMA)
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            if max_db_mb is not None:  # SQLite then answers SQLITE_FULL, exactly as on a full disk
                page = self.db.execute("PRAGMA page_size").fetchone()[0]
                self.db.execute(f"PRAGMA max_page_count={max_db_mb * 1024 * 1024 // page}")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the database {path!r}: {exc}; check the path and its permissions") from exc
        self.path = path

    def _check_version(self, path: str) -> int | None:
        """The file's schema version (None: a new file); refuse one this version cannot read."""
        version: int = self.db.execute("PRAGMA user_version").fetchone()[0]
        has_tables = self.db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'tasks'").fetchone()[0]
        if has_tables and version != SCHEMA_VERSION and version not in UPGRADES_FROM:
            self.db.close()
            raise StoreError(
                f"{path!r} was made by another version of ajq (schema {version}, this one reads {SCHEMA_VERSION}): "
                "start with a new --db file"
            )
        return version if has_tables else None

    def _upgrade(self, version: int | None) -> None:
        """Add the columns an older file lacks (its new tables come from the schema script)."""
        if version is None:
            return
        for added_in, table, column in ADDED_COLUMNS:
            have = {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
            if version < added_in and column.split()[0] not in have:
                self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")

    def close(self) -> None:
        self.db.close()

    # -- transactions -------------------------------------------------------------------------

    def begin(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Undo just this block's writes if it raises; the outer transaction goes on."""
        self.db.execute("SAVEPOINT req")
        try:
            yield
        except BaseException:
            if self.db.in_transaction:  # SQLite may have rolled back the whole transaction already
                self.db.execute("ROLLBACK TO req")
                self.db.execute("RELEASE req")
            raise
        self.db.execute("RELEASE req")

    # -- queues -------------------------------------------------------------------------------

    def queues(self) -> list[QueueRow]:
        rows = self.db.execute(f"SELECT {QUEUE_COLUMNS} FROM queues ORDER BY name")
        return [QueueRow(r[0], r[1], r[2], r[3], bool(r[4]), *r[5:]) for r in rows]

    def put_queue(self, q: QueueRow) -> None:
        self.db.execute(
            f"INSERT OR REPLACE INTO queues ({QUEUE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (q.name, q.max_concurrent, q.max_run_time_s, q.max_tries, int(q.paused), q.created_at, q.retention_s,
             q.dead_max, q.dead_retention_s, q.backoff_s),
        )  # fmt: skip

    def delete_queue(self, name: str) -> None:
        self.db.execute("DELETE FROM queues WHERE name = ?", (name,))

    def state_counts(self) -> dict[tuple[str, str], int]:
        """Tasks per (queue, state): read once at start, then kept up to date in memory."""
        rows = self.db.execute("SELECT queue, state, count(*) FROM tasks GROUP BY queue, state")
        return {(q, s): n for q, s, n in rows}
