"""Queue state in memory: each queue's settings and its tasks counted by state, kept equal to the
database by one `transition`, and the hints dispatch reads (which queues may have tasks ready).

Settings and counts are exact: every change is journaled, so a rolled-back step leaves them as
the database has them. `dirty` and `next_ready` are hints, where too much is only a wasted query:
they are not journaled, and a rollback marks every queue dirty instead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from ajq.broker.journal import Journal
from ajq.broker.store import QueueRow
from ajq.protocol.states import TaskState

_NONE: Counter[str] = Counter()


class QueueBook:
    """Queues by name, their counts by state, and which may hold tasks ready now."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._record = journal.append
        self._rows: dict[str, QueueRow] = {}
        self._counts: dict[str, Counter[str]] = {}
        self.dirty: set[str] = set()  # queues that may hold tasks ready now (read by dispatch)
        self._next_ready: dict[str, float] = {}  # queue -> wall time its next waiting task is due

    def load(self, rows: list[QueueRow], counts: dict[tuple[str, str], int]) -> None:
        """Everything from the database, at start."""
        self._rows = {q.name: q for q in rows}
        self._counts = {}
        for (queue, state), n in counts.items():
            self._counts.setdefault(queue, Counter())[state] = n
        self.all_dirty()

    # -- reading ---------------------------------------------------------------------------------

    def get(self, name: str) -> QueueRow | None:
        return self._rows.get(name)

    def __getitem__(self, name: str) -> QueueRow:
        return self._rows[name]

    def __contains__(self, name: object) -> bool:
        return name in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[QueueRow]:
        """The queues, by name."""
        return iter(sorted(self._rows.values(), key=lambda q: q.name))

    def count(self, queue: str, state: str) -> int:
        return self._counts.get(queue, _NONE)[state]

    def counts(self, queue: str) -> dict[str, int]:
        """The queue's tasks by state, states with none left out."""
        return {state: n for state, n in self._counts.get(queue, _NONE).items() if n}

    def totals(self) -> dict[str, int]:
        """Tasks by state across every queue, states with none left out."""
        totals: Counter[str] = Counter()
        for counts in self._counts.values():
            totals.update(counts)
        return {state: n for state, n in totals.items() if n}

    def any_blocked(self) -> bool:
        """Some task waits on a dependency (so a task that ends may have dependants to resolve)."""
        return any(counts[TaskState.BLOCKED] for counts in self._counts.values())

    # -- changing (journaled) --------------------------------------------------------------------

    def put(self, row: QueueRow) -> None:
        """A queue created or its settings changed (its row is written by the caller)."""
        self._record((self._restore, row.name, self._rows.get(row.name)))
        self._rows[row.name] = row

    def drop(self, name: str) -> None:
        """A queue deleted with its tasks: its settings, counts and hints go."""
        self._record((self._restore, name, self._rows.pop(name)))
        counts = self._counts.pop(name, None)
        if counts is not None:
            self._journal.record(self._counts.__setitem__, name, counts)
        self.dirty.discard(name)
        self._next_ready.pop(name, None)

    def transition(self, queue: str, old: str | None, new: str | None, n: int = 1) -> None:
        """`n` tasks of `queue` moved from state `old` to `new`: None for `old` when they were
        submitted, None for `new` when they were deleted. The only way counts change."""
        counts = self._counts.get(queue)
        if counts is None:
            counts = self._counts[queue] = Counter()
        if old is not None:
            counts[old] -= n
        if new is not None:
            counts[new] += n
        self._record((self._untransition, counts, old, new, n))

    def _restore(self, name: str, row: QueueRow | None) -> None:
        if row is None:
            self._rows.pop(name, None)
        else:
            self._rows[name] = row

    @staticmethod
    def _untransition(counts: Counter[str], old: str | None, new: str | None, n: int) -> None:
        if old is not None:
            counts[old] += n
        if new is not None:
            counts[new] -= n

    # -- hints (not journaled) -------------------------------------------------------------------

    def ready_now(self, queue: str) -> None:
        """`queue` may hold a task ready now: dispatch reads it at the next pass."""
        self.dirty.add(queue)

    def wake(self, queue: str, ready_at: float, now_wall: float) -> None:
        """A task of `queue` becomes ready at `ready_at` (wall time)."""
        if ready_at <= now_wall:
            self.dirty.add(queue)
        elif ready_at < self._next_ready.get(queue, float("inf")):
            self._next_ready[queue] = ready_at

    def drained(self, queue: str) -> None:
        """Dispatch found nothing more ready in `queue` now."""
        self.dirty.discard(queue)

    def wake_due(self, now_wall: float) -> None:
        """Queues whose next task has fallen due are dirty again."""
        if not self._next_ready:
            return
        for queue, due in list(self._next_ready.items()):
            if due <= now_wall:
                del self._next_ready[queue]
                self.dirty.add(queue)

    def next_wake(self) -> float | None:
        """Wall time the next waiting task falls due, if any is known."""
        return min(self._next_ready.values(), default=None)

    def all_dirty(self) -> None:
        """Forget the hints: every queue is read again (after a rollback, at start)."""
        self.dirty = set(self._rows)
        self._next_ready.clear()
