"""The step's journal: every change the broker makes in memory during a step, with its undo.

The database undoes a failed request (a savepoint) or a failed step (a rollback) by itself; the
journal does the same for memory, so the two always agree without reading anything back from
SQLite. Each owner of broker state (queues, leases, workers, waiters, schedules) records the undo
of each change it makes; `rollback(mark)` plays them back, newest first, to where `mark()` was.
"""

from __future__ import annotations

from collections.abc import Callable, ItemsView, Iterator, MutableMapping, ValuesView
from typing import Any, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")
_MISSING: Any = object()


class Journal:
    """Undo actions, newest last; emptied by `commit` once the step's transaction is on disk."""

    __slots__ = ("_undo", "append")

    def __init__(self) -> None:
        self._undo: list[tuple[Any, ...]] = []  # never replaced: `append` is bound to it
        self.append = self._undo.append  # the hot paths' record: append((undo, *args)), no call of ours

    def record(self, undo: Callable[..., object], *args: Any) -> None:
        """Remember to call `undo(*args)` if what was just done is rolled back."""
        self._undo.append((undo, *args))

    def mark(self) -> int:
        """A point to roll back to."""
        return len(self._undo)

    def rollback(self, mark: int = 0) -> None:
        """Undo everything recorded since `mark`, newest first."""
        undo = self._undo
        while len(undo) > mark:
            entry = undo.pop()
            entry[0](*entry[1:])

    def commit(self) -> None:
        """What was recorded is on disk now: nothing of it can be undone any more."""
        self._undo.clear()


class JournaledDict(MutableMapping[K, V], Generic[K, V]):
    """A dict whose every change is recorded in a journal (schedules, queue settings)."""

    def __init__(self, journal: Journal) -> None:
        self._data: dict[K, V] = {}
        self._journal = journal

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __setitem__(self, key: K, value: V) -> None:
        self._journal.record(self._restore, key, self._data.get(key, _MISSING))
        self._data[key] = value

    def __delitem__(self, key: K) -> None:
        old = self._data.pop(key)
        self._journal.record(self._restore, key, old)

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: K, default: V | None = None) -> V | None:  # type: ignore[override]
        return self._data.get(key, default)

    def values(self) -> ValuesView[V]:  # the dict's own views: the mixins' are slow, and the timers read these
        return self._data.values()

    def items(self) -> ItemsView[K, V]:
        return self._data.items()

    def load(self, items: dict[K, V]) -> None:
        """Replace the whole content, not journaled: at start, from the database."""
        self._data = dict(items)

    def _restore(self, key: K, old: V) -> None:
        if old is _MISSING:
            self._data.pop(key, None)
        else:
            self._data[key] = old
