"""The task as a handler sees it, and how one is built from a broker's delivery item."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ajq.protocol import decode_value

log = logging.getLogger("ajq.task")


@dataclass
class Task:
    """One try of one task. `deadline` is when this try's lease ends: the child is killed then."""

    id: str
    type: str
    queue: str
    payload: Any
    tries: int  # tries used, this one included (1 on the first try)
    max_tries: int  # -1: unlimited
    deadline: datetime
    log: logging.LoggerAdapter[logging.Logger] = field(repr=False)
    dependency_results: dict[str, Any] = field(default_factory=dict)  # parent task id -> its result
    max_run_time_s: float = 0.0  # the queue's max_run_time at delivery; 0: unknown
    lease_token: int = 0  # names this try's lease (random, unguessable); 0: unknown
    _extend: Callable[[float], None] | None = field(default=None, repr=False, compare=False)

    @property
    def try_number(self) -> int:
        """This try's number, 1 on the first. It only grows while the task lives, so it fences the
        handler's own writes: store the highest seen per task id and refuse a lower one (SPEC 6.1)."""
        return self.tries

    @property
    def last_try(self) -> bool:
        """This try is the last one: a failure now makes the task dead."""
        return self.max_tries != -1 and self.tries >= self.max_tries

    def extend(self, seconds: float) -> None:
        """Renew this try's lease for a long task: it now ends `seconds` from now (not added to what
        is left), capped at the queue's max_run_time. Returns at once; the worker tells the broker.

        Call it again before the new deadline to keep going (asyncjobs' MarkInProgress). Outside
        ajworker (a Task built by hand) it only moves `deadline`.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds):
            raise ValueError(f"task.extend needs a number of seconds, not {seconds!r}")
        if seconds <= 0:
            raise ValueError(f"task.extend needs more than zero seconds, not {seconds!r}")
        granted = min(seconds, self.max_run_time_s) if self.max_run_time_s > 0 else seconds
        self.deadline = datetime.now(UTC) + timedelta(seconds=granted)
        if self._extend is not None:
            self._extend(float(seconds))


def task_from_item(item: dict[str, Any], extend: Callable[[float], None] | None = None) -> Task:
    """Build the handler's Task from a delivery item (payload and parents' results decoded).

    Raises what msgpack raises when a payload or a parent's result cannot be decoded.
    """
    parents = item.get("dependency_results") or {}
    return Task(
        id=item["id"],
        type=item["type"],
        queue=item["queue"],
        payload=decode_value(item["payload"]),
        tries=item["tries"],
        max_tries=item["max_tries"],
        deadline=datetime.fromtimestamp(item["deadline_wall"], tz=UTC),
        log=logging.LoggerAdapter(log, {"task_id": item["id"]}),
        dependency_results={str(k): decode_value(v) for k, v in parents.items()},
        max_run_time_s=float(item.get("run_time_s", 0.0)),
        lease_token=int(item.get("token", 0)),
        _extend=extend,
    )
