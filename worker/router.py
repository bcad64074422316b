"""The task router: exact type first, then the longest matching type prefix, then "" (catch-all).

It also holds the middleware (wrapped around every handler, outermost first) and the error handler
(asynq's ErrorHandler). The supervisor imports the router before it forks, so the children and the
supervisor share one configuration: failures a child cannot report are handled in the supervisor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ajq.worker.retry import RetryPolicyProvider
    from ajq.worker.task import Task

Handler = Callable[["Task"], Any]
Middleware = Callable[["Task", Handler], Any]  # mw(task, call_next) -> result
ErrorHandler = Callable[["Task", BaseException, int, int], Any]  # fn(task, error, tries, max_tries)
H = TypeVar("H", bound=Handler)
M = TypeVar("M", bound=Middleware)
E = TypeVar("E", bound=ErrorHandler)

log = logging.getLogger("ajq.worker")


class Router:
    """Maps task types to handlers. Register with the `handler(pattern)` decorator.

    `retry` is the policy for failed tries (default: RETRY_LINEAR_TEN_MINUTES); `ajworker --retry`
    overrides it.
    """

    def __init__(self, *, retry: RetryPolicyProvider | None = None) -> None:
        if retry is not None and not callable(getattr(retry, "delay", None)):
            raise TypeError("retry must have a delay(n) -> seconds method, like RetryPolicy")
        self.retry = retry
        self._handlers: dict[str, Handler] = {}
        self._cache: dict[str, Handler | None] = {}
        self._middleware: list[Middleware] = []
        self._on_error: ErrorHandler | None = None

    def handler(self, pattern: str) -> Callable[[H], H]:
        """Decorator: handle tasks whose type is `pattern`, or starts with it if nothing longer matches."""
        if not isinstance(pattern, str):
            raise TypeError(f"a handler pattern is a str, not {type(pattern).__name__}")

        def register(fn: H) -> H:
            self.add(pattern, fn)
            return fn

        return register

    def add(self, pattern: str, fn: Handler) -> None:
        """Register `fn` for `pattern`; a pattern can have one handler only."""
        if pattern in self._handlers:
            raise ValueError(f"a handler for {pattern!r} is registered already ({self._handlers[pattern].__name__})")
        if not callable(fn):
            raise TypeError(f"the handler for {pattern!r} is not callable")
        self._handlers[pattern] = fn
        self._cache.clear()

    def use(self, mw: M) -> M:
        """Add a middleware `mw(task, call_next) -> result` around every handler; the first added is
        the outermost. `call_next(task)` runs the next middleware, or the handler. Usable as a decorator.
        """
        if not callable(mw):
            raise TypeError(f"a middleware is a callable mw(task, call_next), not {type(mw).__name__}")
        self._middleware.append(mw)
        return mw

    def on_error(self, fn: E) -> E:
        """Set the error handler `fn(task, error, tries, max_tries)`, called once for every failed try.

        Failed tries: the handler raised (TerminateTask included), no handler matched, the result
        could not be stored, the process died, the hard timeout, the lease ran out before the task
        started. Not called for a cancel or a task handed back at shutdown. What `fn` raises is
        logged, never passed on. It runs in the child, or on a thread of the supervisor when the child
        cannot (so a slow handler never stops the supervisor's loop).
        """
        if not callable(fn):
            raise TypeError(f"an error handler is fn(task, error, tries, max_tries), not {type(fn).__name__}")
        if self._on_error is not None:
            name = getattr(self._on_error, "__name__", repr(self._on_error))
            raise ValueError(f"an error handler is set already ({name}): a router has one")
        self._on_error = fn
        return fn

    def route(self, task_type: str) -> Handler | None:
        """The handler for `task_type`, or None when no pattern matches it."""
        try:
            return self._cache[task_type]
        except KeyError:
            pass
        best = max((p for p in self._handlers if task_type.startswith(p)), key=len, default=None)
        found = self._handlers[best] if best is not None else None
        if len(self._cache) < 10_000:
            self._cache[task_type] = found
        return found

    def wrap(self, handler: Handler) -> Handler:
        """`handler` inside every middleware, the first registered outermost."""
        call = handler
        for mw in reversed(self._middleware):
            call = _link(mw, call)
        return call

    @property
    def has_error_handler(self) -> bool:
        """Whether on_error was set (a child tells the supervisor before running it)."""
        return self._on_error is not None

    def report_error(self, task: Task, error: BaseException) -> None:
        """Call the error handler, if any, for one failed try; what it raises is logged and dropped."""
        if self._on_error is None:
            return
        try:
            self._on_error(task, error, task.tries, task.max_tries)
        except BaseException:  # a user's hook must never break a child or the supervisor
            log.exception("the error handler raised for task %s (ignored)", task.id)

    @property
    def patterns(self) -> list[str]:
        """The registered patterns, sorted."""
        return sorted(self._handlers)


def _link(mw: Middleware, call_next: Handler) -> Handler:
    """One layer of the chain: a handler that runs `mw` with `call_next` as what comes inside it."""

    def layer(task: Task) -> Any:
        return mw(task, call_next)

    return layer
