"""What the supervisor sends the broker and must account for (SPEC 7, 9): outcomes in RESULTS
batches that carry the credit due, RELEASEs, and each of those requests until the broker answers.

An answered request is forgotten (its refused items logged: resending them cannot help). One the
broker could not write (ERROR INTERNAL: a full disk, a lock) goes again after resend.py's back-off;
one refused for good is logged and dropped; every one still unanswered at a new welcome goes again,
as the broker may have missed it (outcomes and releases are fenced by their tokens: resending is
safe). `outstanding` is the credit granted and not used by a delivery yet: the broker may still send
that many tasks.
"""

from __future__ import annotations

import logging
from typing import Any

from ajq.protocol import ErrorCode, Kind
from ajq.worker.credit import batches
from ajq.worker.link import BrokerLink
from ajq.worker.outcomes import Outcomes
from ajq.worker.resend import Resend

log = logging.getLogger("ajq.worker")

Items = list[dict[str, Any]]


class Outbox:
    """RESULTS and RELEASE awaiting the broker's answer, by corr, and the credit granted."""

    def __init__(self, link: BrokerLink, outcomes: Outcomes) -> None:
        self.link = link
        self.outcomes = outcomes  # the outcomes not sent yet: flush takes them
        self.unacked: dict[int, tuple[Kind, Items]] = {}
        self.resend = Resend()  # what the broker could not write, until its back-off has passed
        self.outstanding = 0  # credit granted to the broker and not yet used by a delivery

    def flush(self, room: int) -> None:
        """Send the outcomes (fenced by their tokens, so even before a welcome) with the credit due:
        `room` (free slots, 0 when no new tasks are wanted) less what the broker may still send."""
        credit = max(0, room - self.outstanding) if self.link.registered else 0
        for batch in batches(self.outcomes.take(), self.link.limits):
            self._send(Kind.RESULTS, {"results": batch, "credit": credit}, batch)
            self.outstanding += credit
            credit = 0
        if credit:
            self.link.send(Kind.CREDIT, {"n": credit})
            self.outstanding += credit

    def release(self, leases: Items) -> None:
        """RELEASE leases (no try used), remembered until the broker answers; in batches within the
        broker's limits (a buffer larger than its batch would be refused whole)."""
        for batch in batches(leases, self.link.limits):
            self._send(Kind.RELEASE, {"leases": batch}, batch)

    def delivered(self, n: int) -> None:
        """A DELIVER of `n` tasks used that much of the credit granted."""
        self.outstanding = max(0, self.outstanding - n)

    def pause(self) -> None:
        """PAUSE the broker's credit for this worker: it drops what it was owed, and so do we."""
        self.outstanding = 0
        self.link.send(Kind.PAUSE, {})

    def welcome(self) -> None:
        """Registered (again): send again what awaited an answer; a new registration has no credit."""
        pending = list(self.unacked.values())
        self.unacked.clear()
        for kind, items in pending:
            self._again(kind, items)
        self.outstanding = 0

    def answered(self, corr: int, data: Any) -> bool:
        """A REPLY to one of our requests (log the items refused); False if `corr` is not one."""
        if self.unacked.pop(corr, None) is None:
            return False
        self.resend.accepted()
        for task_id, _code, message in data["refused"]:
            log.warning("broker refused the outcome of task %s: %s", task_id, message)
        return True

    def refused(self, corr: int, code: Any, message: Any, now: float) -> bool:
        """An ERROR for one of our requests: kept to send again if the broker could not write it,
        else dropped; False if `corr` is not one."""
        sent = self.unacked.pop(corr, None)
        if sent is None:
            return False
        kind, items = sent
        if code == ErrorCode.INTERNAL:  # the broker could not write: nothing applied, send again later
            wait = self.resend.refused(kind, items, now)
            log.error("broker could not take %d outcomes (%s): resending in %.1fs", len(items), message, wait)
        else:  # refused for good: sending the same thing again cannot help
            log.error("broker refused %d outcomes for good: %s", len(items), message)
        return True

    def resend_due(self, now: float) -> None:
        """Send again what the broker could not write, once its back-off has passed."""
        for kind, items in self.resend.due(now):
            self._again(kind, items)

    def next_time(self) -> float | None:
        """When resend_due next has something to do (monotonic), if anything waits."""
        return self.resend.next_time()

    def settled(self) -> bool:
        """Nothing left to send and nothing awaiting an answer."""
        return not (self.unacked or self.outcomes.pending or self.resend)

    def _again(self, kind: Kind, items: Items) -> None:
        """Send again items the broker did not confirm (fenced by tokens, so safe)."""
        if kind is Kind.RESULTS:
            self.outcomes.pending.extend(items)
        else:
            self.release(items)

    def _send(self, kind: Kind, body: dict[str, Any], items: Items) -> None:
        corr = self.link.next_corr()
        self.unacked[corr] = (kind, items)
        self.link.send(kind, body, corr)
