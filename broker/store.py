"""The SQLite store: durable queues and tasks. All SQL of ajq lives in this module.

WAL mode with synchronous=FULL (by default): a commit is on disk when it returns. The broker is
the only process that opens the file; it runs every write batch in one BEGIN IMMEDIATE
transaction, with a SAVEPOINT per request so one bad request rolls back alone.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from broker.errors import StoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY,
    max_concurrent INTEGER NOT NULL,
    max_run_time_s REAL NOT NULL,
    max_tries INTEGER NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    type TEXT NOT NULL,
    payload BLOB NOT NULL,
    state TEXT NOT NULL,
    tries INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    ready_at REAL NOT NULL,
    deadline REAL,
    token INTEGER,
    lease_expires REAL,
    worker TEXT,
    started_at REAL,
    finished_at REAL,
    result BLOB,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS tasks_waiting ON tasks(queue, ready_at, seq) WHERE state IN ('new', 'retry');
CREATE INDEX IF NOT EXISTS tasks_active ON tasks(queue) WHERE state = 'active';
"""

WAITING = "state IN ('new', 'retry')"
TASK_COLUMNS = (
    "id, queue, type, payload, state, tries, created_at, ready_at, deadline, token, "
    "lease_expires, worker, started_at, finished_at, result, last_error"
)


@dataclass(frozen=True, slots=True)
class QueueRow:
    name: str
    max_concurrent: int
    max_run_time_s: float
    max_tries: int  # -1: unlimited
    paused: bool
    created_at: float


@dataclass(frozen=True, slots=True)
class TaskRow:
    id: str
    queue: str
    type: str
    payload: bytes
    state: str
    tries: int
    created_at: float
    ready_at: float
    deadline: float | None
    token: int | None
    lease_expires: float | None
    worker: str | None
    started_at: float | None
    finished_at: float | None
    result: bytes | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class ReadyTask:
    """What dispatch needs of a waiting task to lease it."""

    seq: int
    id: str
    type: str
    payload: bytes
    tries: int
    deadline: float | None


@dataclass(frozen=True, slots=True)
class ActiveTask:
    id: str
    queue: str
    token: int
    tries: int
    lease_expires: float
    worker: str | None


class Store:
    """One connection to the broker's database. Not thread-safe; the broker loop owns it."""

    def __init__(self, path: str, synchronous: str = "FULL") -> None:
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={synchronous}")
            self.db.execute("PRAGMA busy_timeout=5000")
            self.db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the database {path!r}: {exc}; check the path and its permissions") from exc
        self.path = path

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
        rows = self.db.execute(
            "SELECT name, max_concurrent, max_run_time_s, max_tries, paused, created_at FROM queues ORDER BY name"
        )
        return [QueueRow(r[0], r[1], r[2], r[3], bool(r[4]), r[5]) for r in rows]

    def put_queue(self, q: QueueRow) -> None:
        self.db.execute(
            "INSERT INTO queues (name, max_concurrent, max_run_time_s, max_tries, paused, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET max_concurrent=excluded.max_concurrent, "
            "max_run_time_s=excluded.max_run_time_s, max_tries=excluded.max_tries, paused=excluded.paused",
            (q.name, q.max_concurrent, q.max_run_time_s, q.max_tries, int(q.paused), q.created_at),
        )

    def state_counts(self) -> dict[tuple[str, str], int]:
        """Tasks per (queue, state): read once at start, then kept up to date in memory."""
        rows = self.db.execute("SELECT queue, state, count(*) FROM tasks GROUP BY queue, state")
        return {(q, s): n for q, s, n in rows}

    # -- tasks: submit and read ---------------------------------------------------------------

    def insert_tasks(self, queue: str, tasks: Iterable[tuple[str, str, bytes, float | None]], now: float) -> None:
        """Insert new tasks (id, type, payload, deadline); IntegrityError on a duplicate id."""
        self.db.executemany(
            "INSERT INTO tasks (id, queue, type, payload, state, created_at, ready_at, deadline) "
            "VALUES (?, ?, ?, ?, 'new', ?, ?, ?)",
            ((tid, queue, ttype, payload, now, now, deadline) for tid, ttype, payload, deadline in tasks),
        )

    def get_task(self, task_id: str) -> TaskRow | None:
        row = self.db.execute(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return TaskRow(*row) if row else None

    def ready_tasks(self, queue: str, now: float, limit: int) -> list[ReadyTask]:
        rows = self.db.execute(
            f"SELECT seq, id, type, payload, tries, deadline FROM tasks WHERE queue = ? AND {WAITING} "
            "AND ready_at <= ? ORDER BY ready_at, seq LIMIT ?",
            (queue, now, limit),
        )
        return [ReadyTask(*r) for r in rows]

    def next_ready_at(self, queue: str) -> float | None:
        row = self.db.execute(f"SELECT min(ready_at) FROM tasks WHERE queue = ? AND {WAITING}", (queue,)).fetchone()
        due: float | None = row[0]
        return due

    def active_tasks(self) -> list[ActiveTask]:
        rows = self.db.execute(
            "SELECT id, queue, token, tries, lease_expires, worker FROM tasks WHERE state = 'active'"
        )
        return [ActiveTask(*r) for r in rows]

    # -- tasks: state changes -----------------------------------------------------------------

    def lease(self, rows: list[tuple[int, float, str, float, int]]) -> None:
        """Mark tasks active: (token, lease_expires, worker, started_at, seq) each; one try used."""
        self.db.executemany(
            "UPDATE tasks SET state = 'active', tries = tries + 1, token = ?, lease_expires = ?, worker = ?, "
            "started_at = ? WHERE seq = ?",
            rows,
        )

    def finish(self, rows: list[tuple[str, bytes | None, str | None, float, str]]) -> None:
        """End tasks in a final state: (state, result, error, finished_at, id) each."""
        self.db.executemany(
            "UPDATE tasks SET state = ?, result = ?, last_error = ?, finished_at = ?, token = NULL, "
            "lease_expires = NULL WHERE id = ?",
            rows,
        )

    def expire_unstarted(self, seqs: list[int], now: float) -> None:
        self.db.executemany(
            "UPDATE tasks SET state = 'expired', finished_at = ?, last_error = 'deadline passed before it could start' "
            "WHERE seq = ?",
            ((now, s) for s in seqs),
        )

    def retry(self, rows: list[tuple[float, str | None, str]]) -> None:
        """Send tasks back to wait for another try: (ready_at, error, id) each."""
        self.db.executemany(
            "UPDATE tasks SET state = 'retry', ready_at = ?, last_error = ?, token = NULL, lease_expires = NULL, "
            "worker = NULL WHERE id = ?",
            rows,
        )

    def unlease(self, rows: list[tuple[float, str]]) -> None:
        """Hand tasks back without using a try: (ready_at, id) each."""
        self.db.executemany(
            "UPDATE tasks SET state = CASE WHEN tries > 1 THEN 'retry' ELSE 'new' END, tries = tries - 1, "
            "ready_at = ?, token = NULL, lease_expires = NULL, worker = NULL WHERE id = ?",
            rows,
        )
