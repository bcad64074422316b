"""SQL for tasks: submit, dispatch, lease ends, admin listing, retention."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator

from ajq.broker.errors import DuplicateTaskId
from ajq.broker.store.rows import ActiveTask, NewTask, ReadyTask, TaskBrief, TaskRow
from ajq.broker.store.schema import TASK_COLUMNS, WAITING


class TaskSQL:
    db: sqlite3.Connection

    # -- submit and read ----------------------------------------------------------------------

    def insert_tasks(self, queue: str, tasks: Iterable[NewTask], now: float) -> None:
        """Insert new tasks; DuplicateTaskId if one's id exists (nothing of the batch is kept then:
        the caller's savepoint rolls it back)."""
        with _duplicates_refused():
            self._insert_tasks(queue, tasks, now)

    def _insert_tasks(self, queue: str, tasks: Iterable[NewTask], now: float) -> None:
        self.db.executemany(
            "INSERT INTO tasks (id, queue, type, payload, state, created_at, ready_at, deadline, unique_key, "
            "parents, load_results, finished_at, last_error, signature, owner) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (t.id, queue, t.type, t.payload, t.state, now, t.ready_at or now, t.deadline, t.unique_key,
                 t.parents, int(t.load_results), t.finished_at, t.last_error, t.signature, t.owner)
                for t in tasks
            ),
        )  # fmt: skip

    def insert_plain(
        self, queue: str, tasks: list[tuple[str, str, bytes, float | None]], now: float, owner: str | None = None
    ) -> None:
        """The common case, kept narrow for speed: (id, type, payload, deadline), state new; DuplicateTaskId
        if one's id exists."""
        with _duplicates_refused():
            self._insert_plain(queue, tasks, now, owner)

    def _insert_plain(
        self, queue: str, tasks: list[tuple[str, str, bytes, float | None]], now: float, owner: str | None
    ) -> None:
        self.db.executemany(
            "INSERT INTO tasks (id, queue, type, payload, state, created_at, ready_at, deadline, owner) "
            "VALUES (?, ?, ?, ?, 'new', ?, ?, ?, ?)",
            [(tid, queue, ttype, payload, now, now, deadline, owner) for tid, ttype, payload, deadline in tasks],
        )

    def get_task(self, task_id: str) -> TaskRow | None:
        row = self.db.execute(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return TaskRow(*row) if row else None

    def briefs(self, task_ids: list[str]) -> list[TaskBrief]:
        marks = ",".join("?" * len(task_ids))
        rows = self.db.execute(
            f"SELECT id, queue, type, state, tries, unique_key FROM tasks WHERE id IN ({marks})", task_ids
        )
        return [TaskBrief(*r) for r in rows]

    def owners(self, task_ids: list[str]) -> dict[str, str | None]:
        """The key that submitted each of these tasks (None: no key, or a schedule)."""
        marks = ",".join("?" * len(task_ids))
        return dict(self.db.execute(f"SELECT id, owner FROM tasks WHERE id IN ({marks})", task_ids).fetchall())

    def results_of(self, task_ids: list[str]) -> dict[str, bytes | None]:
        marks = ",".join("?" * len(task_ids))
        return dict(self.db.execute(f"SELECT id, result FROM tasks WHERE id IN ({marks})", task_ids).fetchall())

    def list_tasks(
        self,
        queue: str | None,
        state: str | None,
        task_type: str | None,
        before: int | None,
        limit: int,
        owner: str | None = None,
    ) -> list[TaskRow]:
        """Newest first, filtered (by the submitting key too), paged by sequence number."""
        where: list[str] = []
        args: list[object] = []
        for column, value in (("queue", queue), ("state", state), ("type", task_type), ("owner", owner)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if before is not None:
            where.append("seq < ?")
            args.append(before)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self.db.execute(f"SELECT {TASK_COLUMNS} FROM tasks {clause} ORDER BY seq DESC LIMIT ?", [*args, limit])
        return [TaskRow(*r) for r in rows]

    # -- dispatch -----------------------------------------------------------------------------

    def ready_tasks(self, queue: str, now: float, limit: int) -> list[ReadyTask]:
        rows = self.db.execute(
            "SELECT seq, id, type, payload, tries, deadline, state, unique_key, parents, load_results, signature "
            "FROM tasks "
            f"WHERE queue = ? AND {WAITING} AND ready_at <= ? ORDER BY ready_at, seq LIMIT ?",
            (queue, now, limit),
        )
        return [ReadyTask(*r) for r in rows]

    def next_ready_at(self, queue: str) -> float | None:
        row = self.db.execute(f"SELECT min(ready_at) FROM tasks WHERE queue = ? AND {WAITING}", (queue,)).fetchone()
        due: float | None = row[0]
        return due

    def active_tasks(self) -> list[ActiveTask]:
        rows = self.db.execute(
            "SELECT id, queue, type, token, tries, lease_expires, worker, unique_key FROM tasks WHERE state = 'active'"
        )
        return [ActiveTask(*r) for r in rows]

    def cancels(self) -> list[str]:
        """Active tasks whose cancel was acknowledged: their workers are told again after a restart."""
        return [r[0] for r in self.db.execute("SELECT task_id FROM cancels")]

    def add_cancel(self, task_id: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO cancels (task_id) VALUES (?)", (task_id,))

    def drop_cancels(self, task_ids: list[str]) -> None:
        self.db.executemany("DELETE FROM cancels WHERE task_id = ?", [(t,) for t in task_ids])

    def lease(self, rows: list[tuple[int, float, str, float, int]]) -> None:
        """Mark tasks active: (token, lease_expires, worker, started_at, seq) each; one try used."""
        self.db.executemany(
            "UPDATE tasks SET state = 'active', tries = tries + 1, token = ?, lease_expires = ?, worker = ?, "
            "started_at = ? WHERE seq = ?",
            rows,
        )

    def extend(self, task_id: str, lease_expires: float) -> None:
        self.db.execute("UPDATE tasks SET lease_expires = ? WHERE id = ?", (lease_expires, task_id))

    # -- state changes ------------------------------------------------------------------------

    def finish(self, rows: list[tuple[str, bytes | None, str | None, float, str]]) -> None:
        """End tasks in a final state: (state, result, error, finished_at, id) each. The token stays,
        so a late answer under the last lease can still be recognised."""
        self.db.executemany(
            "UPDATE tasks SET state = ?, result = ?, last_error = ?, finished_at = ?, lease_expires = NULL "
            "WHERE id = ?",
            rows,
        )

    def end_waiting(self, task_ids: list[str], state: str, error: str, now: float) -> None:
        """End tasks that never started (expired, cancelled, unreachable)."""
        self.db.executemany(
            "UPDATE tasks SET state = ?, finished_at = ?, last_error = ? WHERE id = ?",
            ((state, now, error, t) for t in task_ids),
        )

    def retry(self, rows: list[tuple[float, str | None, str]]) -> None:
        """Send tasks back to wait for another try: (ready_at, error, id) each. The token stays:
        a late answer under it can still be taken while the task has not been leased again."""
        self.db.executemany(
            "UPDATE tasks SET state = 'retry', ready_at = ?, last_error = ?, lease_expires = NULL, worker = NULL "
            "WHERE id = ?",
            rows,
        )

    def unlease(self, rows: list[tuple[float, str]]) -> None:
        """Hand tasks back without using a try: (ready_at, id) each."""
        self.db.executemany(
            "UPDATE tasks SET state = CASE WHEN tries > 1 THEN 'retry' ELSE 'new' END, tries = tries - 1, "
            "ready_at = ?, token = NULL, lease_expires = NULL, worker = NULL WHERE id = ?",
            rows,
        )

    def make_ready(self, task_ids: list[str], now: float) -> None:
        """Blocked tasks whose parents all completed: they wait for a slot now."""
        self.db.executemany("UPDATE tasks SET state = 'new', ready_at = ? WHERE id = ?", ((now, t) for t in task_ids))

    def requeue(self, task_id: str, now: float) -> None:
        """An ended task sent back to run, with a fresh set of tries."""
        self.db.execute(
            "UPDATE tasks SET state = 'new', tries = 0, ready_at = ?, finished_at = NULL, result = NULL, "
            "token = NULL, lease_expires = NULL, worker = NULL, started_at = NULL WHERE id = ?",
            (now, task_id),
        )

    def delete_tasks(self, task_ids: list[str]) -> None:
        self.db.executemany("DELETE FROM tasks WHERE id = ?", ((t,) for t in task_ids))

    def waiting_briefs(self, queue: str) -> list[TaskBrief]:
        rows = self.db.execute(
            "SELECT id, queue, type, state, tries, unique_key FROM tasks WHERE queue = ? "
            "AND state IN ('scheduled', 'new', 'retry', 'blocked')",
            (queue,),
        )
        return [TaskBrief(*r) for r in rows]

    def queue_task_ids(self, queue: str) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT id FROM tasks WHERE queue = ?", (queue,))]

    # -- retention ----------------------------------------------------------------------------

    def trim(self, queue: str, states: tuple[str, ...], before: float, limit: int) -> list[str]:
        """Delete up to `limit` tasks in `states` that ended before `before`; their states."""
        marks = ",".join("?" * len(states))
        rows = self.db.execute(
            f"DELETE FROM tasks WHERE seq IN (SELECT seq FROM tasks WHERE queue = ? AND state IN ({marks}) "
            "AND finished_at < ? LIMIT ?) RETURNING state",
            (queue, *states, before, limit),
        )
        return [r[0] for r in rows]

    def oldest_finished(self, queue: str, state: str) -> float | None:
        """When the task of `queue` in `state` that ended first ended (the index answers it)."""
        row = self.db.execute(
            "SELECT MIN(finished_at) FROM tasks WHERE queue = ? AND state = ? AND finished_at IS NOT NULL",
            (queue, state),
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def trim_oldest(self, queue: str, state: str, n: int) -> int:
        """Delete the `n` oldest tasks in `state` (the dead cap)."""
        rows = self.db.execute(
            "DELETE FROM tasks WHERE seq IN (SELECT seq FROM tasks WHERE queue = ? AND state = ? "
            "AND finished_at IS NOT NULL ORDER BY finished_at LIMIT ?) RETURNING seq",
            (queue, state, n),
        )
        return len(rows.fetchall())


@contextlib.contextmanager
def _duplicates_refused() -> Iterator[None]:
    """A UNIQUE violation on an insert into tasks is a duplicate id: the only UNIQUE column of the
    table (seq, the key, is given by SQLite). Read from SQLite's extended error code, not its text."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        if exc.sqlite_errorcode == sqlite3.SQLITE_CONSTRAINT_UNIQUE:
            raise DuplicateTaskId("a task with one of these ids exists already") from None
        raise
