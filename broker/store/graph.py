"""SQL for what links tasks: dependencies (parent -> child) and unique locks."""

from __future__ import annotations

import sqlite3


class GraphSQL:
    db: sqlite3.Connection

    def add_deps(self, child: str, parents: list[str]) -> None:
        self.db.executemany("INSERT OR IGNORE INTO deps (parent, child) VALUES (?, ?)", ((p, child) for p in parents))

    def take_children(self, parent: str) -> list[str]:
        """The tasks waiting on `parent`, with those links removed."""
        rows = self.db.execute("DELETE FROM deps WHERE parent = ? RETURNING child", (parent,)).fetchall()
        return [r[0] for r in rows]

    def has_parents(self, child: str) -> bool:
        return self.db.execute("SELECT 1 FROM deps WHERE child = ? LIMIT 1", (child,)).fetchone() is not None

    def drop_child(self, child: str) -> None:
        self.db.execute("DELETE FROM deps WHERE child = ?", (child,))

    def unique_holder(self, key: str) -> tuple[str, float] | None:
        row = self.db.execute("SELECT task_id, expires_at FROM uniques WHERE key = ?", (key,)).fetchone()
        return (row[0], row[1]) if row else None

    def put_unique(self, key: str, task_id: str, expires_at: float) -> None:
        self.db.execute(
            "INSERT INTO uniques (key, task_id, expires_at) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
            "task_id = excluded.task_id, expires_at = excluded.expires_at",
            (key, task_id, expires_at),
        )

    def release_uniques(self, task_ids: list[str]) -> None:
        self.db.executemany("DELETE FROM uniques WHERE task_id = ?", ((t,) for t in task_ids))
