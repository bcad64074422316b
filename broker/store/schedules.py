"""SQL for periodic tasks (cron schedules)."""

from __future__ import annotations

import sqlite3

from ajq.broker.store.rows import ScheduleRow

COLUMNS = "name, cron, type, payload, queue, next_run, last_run, last_task, created_at"


class ScheduleSQL:
    db: sqlite3.Connection

    def schedules(self) -> list[ScheduleRow]:
        return [ScheduleRow(*r) for r in self.db.execute(f"SELECT {COLUMNS} FROM schedules ORDER BY name")]

    def put_schedule(self, s: ScheduleRow) -> None:
        self.db.execute(
            f"INSERT OR REPLACE INTO schedules ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (s.name, s.cron, s.type, s.payload, s.queue, s.next_run, s.last_run, s.last_task, s.created_at),
        )

    def delete_schedule(self, name: str) -> bool:
        return self.db.execute("DELETE FROM schedules WHERE name = ?", (name,)).rowcount > 0
