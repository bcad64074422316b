"""Outcomes and releases the broker could not write (it answered INTERNAL: a full disk, a lock):
kept here and sent again after a back-off that doubles from 0.1 s to 5 s, so a worker never
resends in a tight loop, and that starts over once the broker takes an answer again."""

from __future__ import annotations

from typing import Any

from ajq.protocol import Kind

FIRST_S = 0.1
MOST_S = 5.0

Items = list[dict[str, Any]]


class Resend:
    def __init__(self) -> None:
        self._waiting: list[tuple[Kind, Items]] = []
        self._delay = 0.0
        self._at: float | None = None

    def refused(self, kind: Kind, items: Items, now: float) -> float:
        """Keep what the broker could not write; return the seconds until it goes again."""
        self._waiting.append((kind, items))
        if self._at is None:
            self._delay = min(MOST_S, max(FIRST_S, self._delay * 2))
            self._at = now + self._delay
        return self._at - now

    def accepted(self) -> None:
        """The broker wrote an answer: the next refusal starts from the first delay again."""
        self._delay = 0.0

    def due(self, now: float) -> list[tuple[Kind, Items]]:
        """What is to be sent again now (and forgets it: a new refusal brings it back)."""
        if self._at is None or now < self._at:
            return []
        out, self._waiting, self._at = self._waiting, [], None
        return out

    def next_time(self) -> float | None:
        return self._at

    def __bool__(self) -> bool:
        return bool(self._waiting)
