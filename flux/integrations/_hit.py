"""One hit for all the limits of a request, all or nothing (docs/architecture.md, "One hit",
step 4): one native call on the embedded store, one script (``multi.lua``) on Redis, one
check-then-hit pass on the shared store."""

from __future__ import annotations

from flux.limiter import RateLimiter, RateLimitResult

__all__ = ["Item", "ahit_all", "hit_all"]

#: ``(limiter, identity, cost)``: one limit's part of a hit.
Item = tuple[RateLimiter, str, int]


def hit_all(items: list[Item], endpoint: str | None = None) -> list[RateLimitResult]:
    """One result per ``(limiter, key, cost)``; consumed all together or not at all.

    When the batch is denied, limits that would have passed report ``allowed=True`` with
    nothing taken from them.
    """
    if len(items) == 1:
        limiter, key, cost = items[0]
        return [limiter.hit(key, endpoint, cost)]
    return RateLimiter.hit_many(items)


async def ahit_all(items: list[Item], endpoint: str | None = None) -> list[RateLimitResult]:
    """:func:`hit_all` for async callers: awaits the store's round trip.

    The embedded store answers in well under a microsecond and its ``ahit`` returns at once; a
    networked store (Redis) answers on its I/O threads, so concurrent requests overlap their
    round trips.
    """
    if len(items) == 1:
        limiter, key, cost = items[0]
        return [await limiter.ahit(key, endpoint, cost)]
    return await RateLimiter.ahit_many(items)
