"""HTTP headers for rate-limit decisions, and Retry-After jitter.

One place builds every header flux sends, for every framework. The fields of one limit's
decision are rendered by the native module (``RateLimitResult.header_items``,
``ffi/src/python/headers.rs``); this module adds what the native side does not decide:
``Retry-After`` with its jitter, and the lists of several limits.

- ``Retry-After`` (denied only): whole seconds rounded **up**, so a client that obeys it is never
  early; plus up to ``jitter_max_ms`` of random delay when jitter is enabled, so that clients
  denied together do not all return in the same second.
- ``X-RateLimit-Limit`` / ``X-RateLimit-Remaining`` / ``X-RateLimit-Reset`` (seconds until the
  key is back to full capacity, rounded up), from the most restrictive limit that applied.
- The IETF fields of draft-ietf-httpapi-ratelimit-headers (draft-10, structured-field lists):
  ``RateLimit-Policy: "<name>";q=<quota>;w=<window>`` and
  ``RateLimit: "<name>";r=<remaining>;t=<reset>``, one list item per limit; ``w`` and ``t`` are
  sf-integers (whole seconds, rounded up).
"""

from __future__ import annotations

import functools
import math
import random
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from flux._flux import RateLimitResult

__all__ = [
    "RATELIMIT",
    "RATELIMIT_POLICY",
    "RETRY_AFTER",
    "X_RATELIMIT_LIMIT",
    "X_RATELIMIT_REMAINING",
    "X_RATELIMIT_RESET",
    "AppliedLimit",
    "build_headers",
    "ceil_seconds",
    "limit_headers",
    "retry_after_seconds",
    "sf_string",
    "window_seconds",
]

RETRY_AFTER = "Retry-After"
X_RATELIMIT_LIMIT = "X-RateLimit-Limit"
X_RATELIMIT_REMAINING = "X-RateLimit-Remaining"
X_RATELIMIT_RESET = "X-RateLimit-Reset"
RATELIMIT_POLICY = "RateLimit-Policy"
RATELIMIT = "RateLimit"

# sf-string may hold printable ASCII; '"' and '\' are escaped. Anything else is replaced.
# What an sf-string (RFC 8941) cannot hold, and "%" so that the escape below stays reversible.
_UNSAFE = re.compile(r"[^\x20-\x24\x26-\x7e]")


class AppliedLimit(NamedTuple):
    """One limit that applied to a request: its name, window (seconds) and decision.

    A named tuple rather than a dataclass: one is made per limit per request.
    """

    name: str
    window: float
    result: RateLimitResult


def ceil_seconds(seconds: float) -> int:
    """Whole seconds, rounded up, never negative."""
    return max(0, math.ceil(seconds - 1e-9))


def retry_after_seconds(
    retry_after: float, *, jitter_max_ms: int = 0, rng: random.Random | None = None
) -> int:
    """The Retry-After value: at least 1, rounded up, plus up to ``jitter_max_ms`` of jitter."""
    jitter = (rng or random).uniform(0.0, jitter_max_ms / 1000.0) if jitter_max_ms > 0 else 0.0
    return max(1, ceil_seconds(retry_after + jitter))


def _percent_encoded(match: re.Match[str]) -> str:
    return "".join(f"%{byte:02X}" for byte in match.group().encode("utf-8"))


@functools.lru_cache(maxsize=1024)
def sf_string(text: str) -> str:
    """``text`` as an sf-string (quoted, escaped).

    An sf-string holds printable ASCII only: other characters are percent-encoded as UTF-8
    (``"café"`` becomes ``"caf%C3%A9"``, ``%`` itself ``%25``), so two names never render
    alike and the name can be decoded back. Cached: the texts are limit names, the same few
    on every request.
    """
    text = _UNSAFE.sub(_percent_encoded, text).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def window_seconds(window: float) -> int:
    """A limit's window as the ``w`` parameter: whole seconds, rounded up, at least 1."""
    return max(1, ceil_seconds(window))


def limit_headers(
    quoted_name: str,
    window_s: int,
    result: RateLimitResult,
    *,
    jitter_max_ms: int = 0,
    rng: random.Random | None = None,
) -> dict[str, str]:
    """Every header for a request that one limit decided (the usual case, made cheap).

    ``quoted_name`` is :func:`sf_string` of the name and ``window_s`` is
    :func:`window_seconds` of the window, both worked out once per limit by the caller.
    The same headers as :func:`build_headers` gives for that one limit: the native rendering
    of the five fields (none when the store could not decide: any number would be made up),
    and ``Retry-After`` when denied.
    """
    headers = dict(result.header_items(quoted_name, window_s))
    if headers and not result.allowed:
        headers[RETRY_AFTER] = str(
            retry_after_seconds(result.retry_after, jitter_max_ms=jitter_max_ms, rng=rng)
        )
    return headers


def build_headers(
    applied: Sequence[AppliedLimit],
    *,
    jitter_max_ms: int = 0,
    rng: random.Random | None = None,
) -> dict[str, str]:
    """Every rate-limit header for a request that ``applied`` limits (in order) decided.

    The ``X-RateLimit-*`` trio describes the most restrictive limit: a denying one if any (the
    one that makes the client wait longest), else the one with the fewest hits remaining.
    """
    # A limit whose store could not decide (fail open) has no numbers to show.
    applied = [a for a in applied if not a.result.fail_open]
    if len(applied) == 1:
        name, window, result = applied[0]
        return limit_headers(
            sf_string(name),
            window_seconds(window),
            result,
            jitter_max_ms=jitter_max_ms,
            rng=rng,
        )
    if not applied:
        return {}
    denied = [a for a in applied if not a.result.allowed]
    if denied:
        binding = max(denied, key=lambda a: a.result.retry_after)
    else:
        binding = min(applied, key=lambda a: a.result.remaining)
    result = binding.result
    headers = {
        X_RATELIMIT_LIMIT: str(result.limit),
        X_RATELIMIT_REMAINING: str(max(0, result.remaining)),
        X_RATELIMIT_RESET: str(ceil_seconds(result.reset_after)),
        RATELIMIT_POLICY: ", ".join(
            f"{sf_string(a.name)};q={a.result.limit};w={window_seconds(a.window)}" for a in applied
        ),
        RATELIMIT: ", ".join(
            f"{sf_string(a.name)};r={max(0, a.result.remaining)};"
            f"t={ceil_seconds(a.result.reset_after)}"
            for a in applied
        ),
    }
    if denied:
        headers[RETRY_AFTER] = str(
            retry_after_seconds(result.retry_after, jitter_max_ms=jitter_max_ms, rng=rng)
        )
    return headers
