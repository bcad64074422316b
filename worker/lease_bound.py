"""When a task held by this worker must stop, who stops it, and why (SPEC 6.1).

Three times bound a try, all monotonic:
- `deadline`: its max_run_time (or last task.extend) from when it arrived, the handler's own limit;
- `fence`: the broker's lease surely holds until then; it is counted from the last confirmed contact
  before the delivery arrived (the broker sent it later than that), so it holds however slow the
  delivery was;
- the lease bound: the last confirmed contact plus `lease_bound_s`; past it the broker may take the
  task back.
The supervisor kills a child a little before the earliest of them, with an error that says which
(`overdue`, on its loop's `now`); the child's own kernel timer (worker/watchdog.py, on the real
CLOCK_MONOTONIC) kills it at the fence or the bound at the latest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ajq.worker.errors import HardTimeout, LeaseRanOut, WorkerError
from ajq.worker.link import BrokerLink
from ajq.worker.pool import Child

LEAD_S = 0.05  # the supervisor stops a child this long before its kernel timer would


@dataclass(slots=True)
class Held:
    """A delivered task not started yet."""

    item: dict[str, Any]
    deadline: float  # monotonic: arrival + run_time_s
    fence: float  # monotonic: the broker's lease surely holds until then


class LeaseBound:
    """Computes a held task's stop times from the link's confirmed contact."""

    def __init__(self, link: BrokerLink) -> None:
        self.link = link

    def hold(self, item: dict[str, Any], now: float) -> Held:
        """A delivery just read: its deadline from now, its fence from the contact before it."""
        run_time_s = float(item["run_time_s"])
        return Held(item, now + run_time_s, self.link.contact + run_time_s + self.link.lease_grace_s)

    def extended(self, sent: float, granted_s: float) -> float:
        """The fence after the broker granted an EXTEND we sent at `sent`."""
        return sent + granted_s + self.link.lease_grace_s

    def child_stop(self, fence: float) -> float:
        """When the child's kernel timer kills it: the fence or the bound, whichever comes first."""
        return min(fence, self.link.contact + self.link.lease_bound_s)

    def supervisor_stop(self, deadline: float, fence: float) -> float:
        """When the supervisor kills the child: its deadline, or just before the child would itself."""
        return min(deadline, fence - self.link.lease_grace_s / 2, self.child_stop(fence) - LEAD_S)

    def overdue(self, busy: list[Child], now: float) -> list[tuple[Child, WorkerError]]:
        """The running children the supervisor must stop at `now`, each with its try's error."""
        return [
            (child, self.why(child.task, child.deadline, now))
            for child in busy
            if child.task is not None
            and child.deadline is not None
            and self.supervisor_stop(child.deadline, child.fence) <= now
        ]

    def why(self, item: dict[str, Any], deadline: float, now: float) -> WorkerError:
        """The error of a try stopped at `now` by supervisor_stop."""
        if deadline <= now:
            return HardTimeout(_timeout_text(item))
        if not self.link.in_contact(now + LEAD_S):
            bound = self.link.lease_bound_s
            why = f"no answer from the broker for the lease bound ({bound:g}s)"
            return LeaseRanOut(f"{why}: stopped, as the broker may give the task to another worker")
        return LeaseRanOut("the broker did not confirm the lease (or its task.extend) in time: stopped before it ends")


def _timeout_text(item: dict[str, Any]) -> str:
    """The hard-timeout error, naming the limit the handler ran past."""
    if "extended_s" in item:
        limit = f"its last task.extend ({item['extended_s']:g}s)"
    else:
        limit = f"max_run_time ({item['run_time_s']:g}s)"
    return f"hard timeout: the handler ran past {limit}; its process was killed"
