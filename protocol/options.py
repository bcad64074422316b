"""Numbers in options, checked alike by ajbroker, ajworker, ajc and the client API.

NaN, infinity, and negative or zero values where they make no sense are refused with what to give
instead, so nothing starts half-configured and nothing non-finite reaches the wire. The checks
return a problem text (None when fine); each part words the error its own way and raises its own
exception, and `arg()` turns a check into an argparse type.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from typing import NoReturn, TypeVar

T = TypeVar("T")

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([dhms])")


def is_number(value: object) -> bool:
    """An int or float that is not a bool (True is an int to Python, never a count to us)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def seconds_problem(value: object, *, zero_ok: bool = False, unit: str = "seconds") -> str | None:
    """None for a finite number of seconds above 0 (or 0 too, with `zero_ok`); else what to give."""
    want = f"a finite number of {unit}, 0 or more" if zero_ok else f"a finite number of {unit} above 0"
    if not is_number(value):
        return want
    assert isinstance(value, int | float)
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        return want
    return None


def count_problem(value: object, *, minimum: int, maximum: int | None = None) -> str | None:
    """None for a whole number of at least `minimum` (and at most `maximum`); else what to give."""
    want = f"a whole number of {minimum} or more" if maximum is None else f"a whole number from {minimum} to {maximum}"
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        return want
    return want if maximum is not None and value > maximum else None


def refusal(name: str, value: object, problem: str, example: str) -> str:
    """The one-line error for an option: its name, the value given, what to give, an example."""
    return f"{name}={value!r}: give {problem}, e.g. {name}={example}"


def parse_duration(text: str) -> float:
    """Seconds in "90", "90s", "10m", "1h30m" or "2d": how people write run times; ValueError else."""
    s = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", s):
        return float(s)
    if not s or _DURATION.sub("", s) != "":
        raise ValueError(f"invalid duration {text!r}: use e.g. 90, 90s, 10m, 1h30m or 2d")
    return sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(s))


def seconds_arg(*, zero_ok: bool = False, example: str = "1.5", unit: str = "seconds") -> Callable[[str], float]:
    """An argparse type: a finite number of seconds (above 0, or 0 too with `zero_ok`)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        problem = seconds_problem(value, zero_ok=zero_ok, unit=unit)
        if problem:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: give {problem}, e.g. {example}")
        return value

    return parse


def count_arg(
    *, minimum: int, example: str, what: str | None = None, maximum: int | None = None
) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `minimum`, at most `maximum` (`what` words it otherwise)."""

    def parse(text: str) -> int:
        try:
            value: object = int(text)
        except ValueError:
            value = None
        problem = count_problem(value, minimum=minimum, maximum=maximum)
        if problem:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: give {what or problem}, e.g. {example}")
        assert isinstance(value, int)
        return value

    return parse


def arg(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type from a parser that raises ValueError with a message worth showing."""

    def wrapped(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    wrapped.__name__ = getattr(parse, "__name__", "value")
    return wrapped


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, `prog: what is wrong`, and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog.split()[0]} --help)\n")
