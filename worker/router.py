"""The task router: exact type first, then the longest matching type prefix, then "" (catch-all)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from worker.retry import RetryPolicyProvider
    from worker.task import Task

Handler = Callable[["Task"], Any]
H = TypeVar("H", bound=Handler)


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

    def handler(self, pattern: str) -> Callable[[H], H]:
        """Decorator: handle tasks whose type is `pattern`, or starts with it if nothing longer matches."""
        if not isinstance(pattern, str):
            raise TypeError(f"a handler pattern is a str, not {type(pattern).__name__}")

        def register(fn: H) -> H:
            self.add(pattern, fn)
            return fn

        return register

    def add(self, pattern: str, fn: Handler) -> None:
        if pattern in self._handlers:
            raise ValueError(f"a handler for {pattern!r} is registered already ({self._handlers[pattern].__name__})")
        if not callable(fn):
            raise TypeError(f"the handler for {pattern!r} is not callable")
        self._handlers[pattern] = fn
        self._cache.clear()

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

    @property
    def patterns(self) -> list[str]:
        return sorted(self._handlers)
