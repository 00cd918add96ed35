"""Value checkers for flux.toml keys.

A checker takes a raw value (from TOML or from code) and returns it normalised, or raises
:class:`Invalid` saying what was expected. Checkers know nothing about files or key names: the
caller (flux.config) adds those to build a ConfigError. Every checker accepts its own output, so
a dataclass can re-check values that the loader already normalised.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Iterable
from typing import Any, Union
from urllib.parse import urlsplit

from flux.rates import EXPECTED, BadRate, parse_rates

Check = Callable[[Any], Any]
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
_NETWORK_TYPES = (ipaddress.IPv4Network, ipaddress.IPv6Network)

REDIS_URL_SCHEMES = ("redis", "rediss", "unix")


class Invalid(Exception):
    """A value failed its check; ``expected`` completes the sentence "expected ..."."""

    def __init__(self, expected: str, value: Any, detail: str | None = None) -> None:
        self.expected = expected
        self.value = value
        self.detail = detail
        super().__init__(self.describe())

    def describe(self) -> str:
        """``expected X, got Y`` plus the detail, if any."""
        text = f"expected {self.expected}, got {show(self.value)}"
        return f"{text} ({self.detail})" if self.detail else text


def show(value: Any) -> str:
    """Render a value as the user wrote it in TOML, with its type, for error messages."""
    if isinstance(value, bool):
        return f"{'true' if value else 'false'} (a boolean)"
    if isinstance(value, str):
        return f'"{value}" (a string)'
    if isinstance(value, (int, float)):
        return f"{value} (a number)"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (list, tuple)):
        return "an array"
    return f"{value!r} ({type(value).__name__})"


def _is_number(value: Any) -> bool:
    # bool is an int subclass: `requests = true` must not mean 1.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def boolean(value: Any) -> bool:
    """``true`` or ``false``."""
    if not isinstance(value, bool):
        raise Invalid("true or false", value)
    return value


def integer(low: int | None = None, high: int | None = None) -> Check:
    """An integer (not a boolean, not a float) within ``[low, high]``."""
    if low is not None and high is not None:
        expected = f"an integer from {low} to {high}"
    elif low is not None:
        expected = f"an integer >= {low}"
    else:
        expected = "an integer"

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(expected, value)
        if (low is not None and value < low) or (high is not None and value > high):
            raise Invalid(expected, value)
        return value

    return check


def seconds(value: Any) -> int | float:
    """A finite number of seconds > 0, integer or float (kept as given)."""
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise Invalid("a number of seconds > 0", value)
    return value


def fraction(value: Any) -> float:
    """A number from 0 to 1 inclusive, returned as a float."""
    if not _is_number(value) or not 0 <= value <= 1:
        raise Invalid("a number from 0.0 to 1.0", value)
    return float(value)


def text(*, empty: bool = True) -> Check:
    """A string; ``empty=False`` rejects ``""``."""
    expected = "a string" if empty else "a non-empty string"

    def check(value: Any) -> str:
        if not isinstance(value, str) or (not empty and not value):
            raise Invalid(expected, value)
        return value

    return check


def rate_string(value: Any) -> str:
    """A rate string (``"10/second; 1000/day"``, see :mod:`flux.rates`), as written."""
    if not isinstance(value, str):
        raise Invalid('a rate string such as "100/minute"', value)
    try:
        parse_rates(value)
    except BadRate as exc:
        raise Invalid(EXPECTED, value, exc.reason) from None
    return value


def optional(inner: Check) -> Check:
    """``None`` (the key is absent: TOML has no null) or whatever ``inner`` accepts."""

    def check(value: Any) -> Any:
        return None if value is None else inner(value)

    return check


def choice(options: Iterable[str]) -> Check:
    """One of the given strings, exactly."""
    allowed = tuple(options)
    expected = "one of " + ", ".join(f'"{o}"' for o in allowed)

    def check(value: Any) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise Invalid(expected, value)
        return value

    return check


def networks(value: Any) -> tuple[Network, ...]:
    """An array of CIDRs or bare addresses (``"10.0.0.0/8"``, ``"::1"``) → ip_network objects.

    Host bits set (``"10.0.0.1/8"``) is refused rather than silently masked: it usually means a
    typo, and trusting the wrong network would let spoofed client addresses through.
    """
    expected = 'an array of CIDRs such as ["10.0.0.0/8", "::1"]'
    if not isinstance(value, (list, tuple)):
        raise Invalid(expected, value)
    result = []
    for item in value:
        if isinstance(item, _NETWORK_TYPES):
            result.append(item)
            continue
        if not isinstance(item, str):
            raise Invalid(expected, value, f"item {show(item)} is not a string")
        try:
            result.append(ipaddress.ip_network(item.strip(), strict=True))
        except ValueError as exc:
            detail = f'"{item}" is not a valid CIDR: {exc}'
            try:
                fixed = ipaddress.ip_network(item.strip(), strict=False)
                detail += f' (did you mean "{fixed}"?)'
            except ValueError:
                pass
            raise Invalid(expected, value, detail) from None
    return tuple(result)


def _host_port(node: str) -> bool:
    """True for ``host:port`` and ``[v6addr]:port`` with a port in 1..65535."""
    host, sep, port = node.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        return False
    if host.startswith("["):
        if not host.endswith("]"):
            return False
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
        return True
    return ":" not in host and not any(c.isspace() for c in host)


def cluster(value: Any) -> bool | tuple[str, ...]:
    """``true``/``false``, or a non-empty array of ``"host:port"`` seed nodes."""
    expected = 'true, false or a non-empty array of "host:port" nodes'
    if isinstance(value, bool):
        return value
    if not isinstance(value, (list, tuple)) or not value:
        raise Invalid(expected, value)
    for node in value:
        if not isinstance(node, str) or not _host_port(node):
            raise Invalid(expected, value, f"{show(node)} is not host:port")
    return tuple(value)


def redis_url(value: Any) -> str:
    """A ``redis://``, ``rediss://`` or ``unix://`` URL with a valid port and database."""
    expected = "a redis://, rediss:// or unix:// URL"
    if not isinstance(value, str):
        raise Invalid(expected, value)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - evaluating it validates the port number
    except ValueError as exc:
        raise Invalid(expected, value, str(exc)) from None
    if parts.scheme not in REDIS_URL_SCHEMES:
        raise Invalid(expected, value)
    if parts.scheme == "unix" and not parts.path:
        raise Invalid(expected, value, "unix:// needs a socket path")
    if parts.scheme != "unix":
        db = parts.path.strip("/")
        if db and not db.isdigit():
            raise Invalid(expected, value, f'database "{db}" is not a number')
    return value
