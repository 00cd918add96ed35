"""Rate strings: the notation every Python rate limiter reads.

``"100/minute"``, ``"100 per minute"``, ``"5/2 seconds"``, ``"10/second; 1000/day"``. A string
holds one or more rates separated by ``;`` or ``,``; each is a count, ``/`` or ``per``, an
optional multiplier and a unit: second, minute, hour or day (singular or plural, or the short
forms ``s``, ``sec``, ``m``, ``min``, ``h``, ``hr``, ``d``). Several rates are checked together,
all or nothing, as stacked decorators are.

A preset name never contains ``/`` or a space, so :func:`is_rate_string` tells a rate string
from a preset name without looking either up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["BadRate", "Rate", "is_rate_string", "parse_rates"]

_UNITS = {
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
}

_ONE_RATE = re.compile(
    r"""\s*(?P<count>\d+)\s*
        (?:/|\bper\b)\s*
        (?P<multiplier>\d+(?:\.\d+)?)?\s*
        (?P<unit>[a-z]+)\s*""",
    re.IGNORECASE | re.VERBOSE,
)

EXPECTED = (
    'expected "<count>/<unit>" or "<count> per <n> <unit>s" with a unit of second, minute, '
    'hour or day, several separated by ";" (e.g. "100/minute", "5/2 seconds", '
    '"10/second; 1000/day")'
)


class BadRate(ValueError):
    """A malformed rate string; ``reason`` says what is wrong, the message also quotes the
    string and what is expected."""

    def __init__(self, text: str, reason: str, expected: bool = True) -> None:
        self.text = text
        self.reason = reason
        hint = f"; {EXPECTED}" if expected else ""
        super().__init__(f"bad rate string {text!r}: {reason}{hint}")


@dataclass(frozen=True)
class Rate:
    """``requests`` per ``period`` seconds, as one part of a rate string spelt it."""

    requests: int
    period: float

    def describe(self) -> str:
        """``10/1s``: the quota, as flux names unnamed limits."""
        return f"{self.requests}/{self.period:g}s"


def is_rate_string(text: str) -> bool:
    """Whether ``text`` is meant as a rate string (a preset name has no ``/`` and no space)."""
    return "/" in text or " " in text.strip() or ";" in text


def parse_rates(text: str) -> tuple[Rate, ...]:
    """Every rate of ``text``, in order; ValueError quoting the string when one is malformed.

    A rate may not appear twice (``"5/minute; 5/minute"``): it would count each hit twice.
    """
    if not isinstance(text, str):
        raise TypeError(f"a rate string is a str, got {type(text).__name__}")
    rates: list[Rate] = []
    parts = re.split(r"[;,]", text)
    if len(parts) > 1 and not parts[-1].strip():
        parts.pop()  # a trailing separator is harmless
    for part in parts:
        if not part.strip():
            raise BadRate(text, "an empty rate")
        rates.append(_parse_one(text, part))
    if len(set(rates)) != len(rates):
        raise BadRate(text, "a rate is given twice", expected=False)
    return tuple(rates)


def _parse_one(text: str, part: str) -> Rate:
    found = _ONE_RATE.fullmatch(part)
    if found is None:
        raise BadRate(text, f"cannot read {part.strip()!r}")
    unit = found["unit"].lower()
    seconds = _UNITS.get(unit)
    if seconds is None:
        raise BadRate(text, f"unknown unit {found['unit']!r}")
    count = int(found["count"])
    multiplier = float(found["multiplier"]) if found["multiplier"] else 1.0
    if count < 1:
        raise BadRate(text, "the count must be at least 1", expected=False)
    if multiplier <= 0:
        raise BadRate(text, "the period must be longer than 0", expected=False)
    period = multiplier * seconds
    return Rate(count, int(period) if period == int(period) else period)
