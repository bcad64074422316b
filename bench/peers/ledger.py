"""Reading the ledger the task bodies write: who ran, how often, and when.

The bench knows which ids it submitted; after a workload it counts, from the ledger alone, every
id that never ran (lost), every extra run of an id (duplicated) and every id it never submitted
(unexpected). The same count for every system.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.procs import poll_until


@dataclass(frozen=True)
class Ended:
    """One run of a task body, as its ledger line says."""

    bid: str
    kind: str
    start: float
    end: float
    pid: int


@dataclass(frozen=True)
class Tally:
    """How the runs of a workload's tasks compare with what was submitted."""

    submitted: int
    ran: int  # runs seen, duplicates included
    lost: int  # submitted ids that never ran
    duplicated: int  # runs beyond the first of an id
    unexpected: int  # runs of ids never submitted

    @property
    def exact(self) -> bool:
        """Every submitted task ran exactly once, and nothing else ran."""
        return self.lost == self.duplicated == self.unexpected == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "submitted": self.submitted, "ran": self.ran, "lost": self.lost,
            "duplicated": self.duplicated, "unexpected": self.unexpected,
        }  # fmt: skip


@dataclass
class Ledger:
    """The ledger file, read incrementally: call poll() to take in the lines written since."""

    path: Path
    ended: list[Ended] = field(default_factory=list)
    runs: Counter[str] = field(default_factory=Counter)
    first: dict[str, Ended] = field(default_factory=dict)
    began: dict[str, list[float]] = field(default_factory=dict)
    _offset: int = 0

    def poll(self) -> int:
        """Read the complete lines appended since the last poll; the number of ended runs so far."""
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return len(self.ended)
        done = chunk.rfind(b"\n") + 1  # a line still being written waits for the next poll
        self._offset += done
        for line in chunk[:done].decode().splitlines():
            self._take(line.split())
        return len(self.ended)

    def _take(self, f: list[str]) -> None:
        if f[0] == "E":
            e = Ended(f[1], f[2], float(f[3]), float(f[4]), int(f[5]))
            self.ended.append(e)
            self.first.setdefault(e.bid, e)
            self.runs[e.bid] += 1
        elif f[0] == "B":
            self.began.setdefault(f[1], []).append(float(f[2]))

    def wait_ended(self, n: int, timeout: float, what: str, interval: float = 0.005) -> None:
        """Poll until at least `n` runs have ended; TimeoutError after `timeout` seconds."""
        try:
            poll_until(lambda: self.poll() >= n, timeout, what, interval)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}: {len(self.ended)} of {n} ran") from None

    def start_of(self, bid: str) -> float | None:
        """When the first run of `bid` started, once it has ended; None before."""
        self.poll()
        e = self.first.get(bid)
        return e.start if e else None

    def wait_start(self, bid: str, timeout: float, interval: float = 0.0005) -> float:
        """Poll until `bid` has run; when it started."""
        return poll_until(lambda: self.start_of(bid) or 0.0, timeout, f"task {bid} run", interval)

    def of(self, bids: set[str]) -> list[Ended]:
        """The runs of the given ids."""
        return [e for e in self.ended if e.bid in bids]

    def tally(self, submitted: list[str]) -> Tally:
        """Count lost, duplicated and unexpected runs against the ids submitted."""
        self.poll()
        want = set(submitted)
        if len(want) != len(submitted):
            raise ValueError("the bench submitted an id twice: its own bug, not the system's")
        return Tally(
            submitted=len(want),
            ran=sum(self.runs.values()),
            lost=sum(1 for b in want if b not in self.runs),
            duplicated=sum(k - 1 for b, k in self.runs.items() if b in want and k > 1),
            unexpected=sum(k for b, k in self.runs.items() if b not in want),
        )
