"""What the bench needs from a system: where its backend is, how to submit, how to start workers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:
    from bench.peers.stack import Stack

Item = tuple[str, float]  # (the bench's task id, the body's argument)


@dataclass(frozen=True)
class Where:
    """Where a run's backend listens; picklable, so a client process can connect too."""

    redis_url: str = ""
    endpoint: str = ""  # ajq's broker
    sqlite: str = ""  # Huey's database file


class Submitter(Protocol):
    """A client of one system, submitting one task per call."""

    def submit_all(self, kind: str, items: Sequence[Item]) -> None:
        """Submit one task per item, one call (one round trip to the backend) each, in order."""

    def close(self) -> None:
        """Release the connection."""


class System(ABC):
    """One system under test, with the settings it runs with (class attributes, shown in the report)."""

    key: ClassVar[str]  # for --only
    label: ClassVar[str]
    needs_redis: ClassVar[bool] = False
    package: ClassVar[str]  # the distribution to report the version of
    settings: ClassVar[str]  # the exact settings, in words
    durability: ClassVar[str]  # when an acknowledged submit is safe
    crash_note: ClassVar[str]  # what decides when a dead worker's task runs again
    eventually: ClassVar[str | None] = None  # when it would run again by its settings; None: never
    scale: ClassVar[float] = 1.0  # share of the queue workloads' counts this system runs

    def start_backend(self, stack: Stack) -> Where:
        """Start what the system needs besides Redis (the stack has started that); where it is."""
        return stack.where

    @abstractmethod
    def worker_args(self, where: Where) -> list[list[str]]:
        """`python` arguments of each worker process to start (the two processes together)."""

    @abstractmethod
    def ready(self, stack: Stack) -> bool:
        """Whether the workers are up and taking tasks."""

    @staticmethod
    @abstractmethod
    def submitter(where: Where) -> Submitter:
        """A new client; a client process calls this too."""


def log_count(stack: Stack, text: str) -> int:
    """How many times `text` appears in the workers' logs."""
    return sum(w.log.read_text(errors="replace").count(text) for w in stack.workers if w.log.exists())
