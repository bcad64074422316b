"""Task events: every state change, published on a PUB socket after the commit that made it.

Best effort: nothing is encoded while nobody subscribes, and the socket drops what a slow
subscriber cannot take, so events never slow the broker.
"""

from __future__ import annotations

from typing import Any

import msgpack


class Events:
    def __init__(self) -> None:
        self.subscribers = 0
        self.pending: list[bytes] = []

    def emit(
        self, task_id: str, queue: str, task_type: str, state: str, tries: int, error: str | None, when: float
    ) -> None:
        if self.subscribers <= 0:
            return
        event: dict[str, Any] = {
            "id": task_id,
            "queue": queue,
            "type": task_type,
            "state": state,
            "tries": tries,
            "error": error,
            "time": when,
        }
        self.pending.append(msgpack.packb(event))

    def mark(self) -> int:
        """A point to come back to with `drop_since` if what follows is undone."""
        return len(self.pending)

    def drop_since(self, mark: int) -> None:
        del self.pending[mark:]

    def take(self) -> list[bytes]:
        out, self.pending = self.pending, []
        return out
