"""Outcomes on their way to the broker, and the rules for the failures the supervisor itself sees.

A child reports the outcome of a try it finished (and runs the error handler there). When it cannot
(it died, the hard timeout killed it, the lease ran out before it started) the supervisor builds the
`fail` outcome here and has the router's error handler run on its hook thread (hooks.py, off the
loop), unless the child already ran it for that try, so the handler runs at most once per failed try.
"""

from __future__ import annotations

import logging
from typing import Any

from ajq.protocol import CANCELLED_ERROR, options
from ajq.protocol.limits import Limits, cut_error
from ajq.worker.errors import BadResult, WorkerError
from ajq.worker.hooks import HookRunner
from ajq.worker.retry import RetryPolicyProvider
from ajq.worker.router import Router
from ajq.worker.task import task_from_item

log = logging.getLogger("ajq.worker")


class Outcomes:
    """The RESULTS items not sent yet (`pending`), built from deliveries and what became of them."""

    def __init__(self, router: Router, retry: RetryPolicyProvider, hooks: HookRunner) -> None:
        self.router = router
        self.retry = retry
        self.hooks = hooks
        self.pending: list[dict[str, Any]] = []
        self.limits = Limits()  # the broker's, from its welcome: a result over its payload limit fails the try

    def from_child(self, item: dict[str, Any], outcome: dict[str, Any]) -> None:
        """A child's outcome for `item`, fenced with its lease and given the retry delay if it failed.
        A result the broker would refuse fails the try here instead (a refused item is never resent)."""
        size, most = len(outcome.get("result") or b""), self.limits.max_payload_bytes
        if outcome["outcome"] == "complete" and size > most:
            why = f"the handler's result is {size} bytes, over the broker's limit of {most}"
            self.failed(item, BadResult(f"{why} (ajbroker --max-payload-kb): store it elsewhere, return a reference"),
                        handled=False)  # fmt: skip
            return
        outcome["id"], outcome["token"] = item["id"], item["token"]
        if outcome["outcome"] == "fail":
            outcome["retry_in_s"], outcome["error"] = self._next_try(item, outcome.get("error") or "")
        self.pending.append(outcome)

    def failed(self, item: dict[str, Any], error: WorkerError, *, handled: bool) -> None:
        """A failed try the child could not report; `handled`: the child already ran the error handler."""
        log.warning("task %s (%s): %s", item["id"], item["type"], error)
        if not handled and self.router.has_error_handler:
            self.hooks.call(self._error_handler, item, error)
        delay, text = self._next_try(item, str(error))
        self.pending.append(
            {"id": item["id"], "token": item["token"], "outcome": "fail", "error": text, "retry_in_s": delay}
        )

    def cancelled(self, item: dict[str, Any]) -> None:
        """The broker cancelled this lease: the task ends, terminated, with no more tries."""
        log.info("task %s (%s): cancelled", item["id"], item["type"])
        outcome = {"id": item["id"], "token": item["token"], "outcome": "terminate", "error": CANCELLED_ERROR}
        self.pending.append(outcome)

    def take(self) -> list[dict[str, Any]]:
        """Every pending item, emptying the list (for one flush)."""
        items, self.pending = self.pending, []
        return items

    def _next_try(self, item: dict[str, Any], error: str) -> tuple[float, str]:
        """Seconds before the next try, from the retry policy, and the try's error text.

        A policy that raises or returns something other than finite seconds (NaN, infinity, a
        negative number, not a number) must not break the RESULTS batch: the task is retried at
        once and the error text says what the policy did wrong.
        """
        n = item["tries"]
        try:
            delay: object = self.retry.delay(n)
        except Exception as exc:  # a user's policy must not break the worker
            log.exception("retry policy failed; retrying at once")
            return 0.0, cut_error(f"{error}\n(the retry policy's delay({n}) raised {exc!r}; retried at once)")
        if options.seconds_problem(delay, zero_ok=True):
            log.error("retry policy returned %r for delay(%d); retrying at once", delay, n)
            note = f"the retry policy's delay({n}) returned {delay!r}, not finite seconds of 0 or more; retried at once"
            return 0.0, cut_error(f"{error}\n({note})")
        assert isinstance(delay, int | float)
        return float(delay), error

    def _error_handler(self, item: dict[str, Any], error: WorkerError) -> None:
        """Run the router's error handler (on the hook thread), with a Task rebuilt from the delivery item."""
        try:
            task = task_from_item(item)
        except Exception:  # an undecodable payload: the handler cannot be given a Task
            log.exception("task %s: cannot build its Task for the error handler", item["id"])
            return
        self.router.report_error(task, error)
