"""Waiting for a rate limit instead of failing: the loops behind ``RateLimiter.acquire``.

A waiter sleeps exactly the retry time its last denied hit reported, then tries again: it
never polls. A deadline (``timeout``) is checked *before* each sleep, so a wait that could
not end in time raises :class:`~flux.RateLimitExceeded` at once instead of sleeping for
nothing.

Async waiters may be cancelled at any await. Cancelled in a sleep, nothing was taken. Cancelled
while a Redis hit is in flight, the hit may still be counted by Redis after the waiter is
gone: the hit is shielded (it runs to its end) and, when it turns out allowed, given back with
the limiter's ``refund``, so a cancelled waiter consumes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from flux.exceptions import RateLimitExceeded

__all__ = ["MIN_WAIT", "Deadline", "aacquire", "acquire", "give_back", "pause", "shielded"]

LOG = logging.getLogger("flux")

#: Shortest sleep between two tries. A denied result always carries a positive retry time;
#: this floor only guards against a 0 (rounding, a store's quirk) turning a wait into a spin.
MIN_WAIT = 0.001

T = TypeVar("T")


class Deadline:
    """When a waiter must give up: ``timeout`` seconds from now (None: never)."""

    __slots__ = ("at",)

    def __init__(self, timeout: float | None) -> None:
        """Check ``timeout`` (seconds >= 0, or None) and fix the deadline now."""
        if timeout is None:
            self.at: float | None = None
            return
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"timeout must be a number of seconds or None, got {timeout!r}")
        if math.isnan(timeout) or timeout < 0:
            raise ValueError(f"timeout must be >= 0 seconds, got {timeout!r}")
        self.at = time.monotonic() + timeout

    def allows(self, wait: float) -> bool:
        """Whether sleeping ``wait`` seconds still ends by the deadline."""
        return self.at is None or time.monotonic() + wait <= self.at


def pause(retry_after: float) -> float:
    """How long to sleep after a denied hit that said ``retry_after``."""
    return max(float(retry_after), MIN_WAIT)


def acquire(limiter: Any, key: str, cost: int, timeout: float | None) -> Any:
    """Hit ``key`` until a hit is allowed, sleeping the reported retry time in between."""
    deadline = Deadline(timeout)
    while True:
        result = limiter.hit(key, None, cost)
        if result.allowed:
            return result
        wait = pause(result.retry_after)
        if not deadline.allows(wait):
            raise RateLimitExceeded(key, result.retry_after, result=result)
        time.sleep(wait)


async def aacquire(limiter: Any, key: str, cost: int, timeout: float | None) -> Any:
    """:func:`acquire` for async code: ``asyncio.sleep`` between tries, Redis hits awaited."""
    deadline = Deadline(timeout)
    networked = getattr(limiter, "store", None) is not None
    while True:
        if networked:
            refund = [(limiter, key, cost)]
            result = await shielded(limiter.ahit(key, None, cost), lambda r: [r], refund)
        else:  # the embedded store or a shared region: answered inline, nothing to cancel
            result = limiter.hit(key, None, cost)
        if result.allowed:
            return result
        wait = pause(result.retry_after)
        if not deadline.allows(wait):
            raise RateLimitExceeded(key, result.retry_after, result=result)
        await asyncio.sleep(wait)


async def shielded(
    hit: Awaitable[T],
    results_of: Callable[[T], Sequence[Any]],
    items: Sequence[tuple[Any, str, int]],
) -> T:
    """Await ``hit`` so that cancelling the caller does not lose an allowed hit.

    The hit runs to its end whatever happens to the caller; if the caller was cancelled and
    the hit was allowed (``results_of`` gives its results, one per item), every item
    ``(limiter, key, cost)`` is given back (see :func:`give_back`).
    """
    task = asyncio.ensure_future(hit)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(lambda done: _after_cancel(done, results_of, items))
        raise


def _after_cancel(
    task: asyncio.Future[Any],
    results_of: Callable[[Any], Sequence[Any]],
    items: Sequence[tuple[Any, str, int]],
) -> None:
    if task.cancelled() or task.exception() is not None:
        return  # nothing was counted (or nobody can tell): nothing to give back
    results = results_of(task.result())
    # Denied hits changed nothing; a fail-open pass was counted nowhere.
    if not all(r.allowed for r in results) or any(getattr(r, "fail_open", False) for r in results):
        return
    for limiter, key, cost in items:
        give_back(limiter, key, cost)


def give_back(limiter: Any, key: str, cost: int) -> None:
    """Undo an allowed hit of ``cost`` on ``key`` with the limiter's ``refund`` (never above
    full capacity). Runs in an event-loop callback, so a failure is logged, never raised."""
    try:
        limiter.refund(key, cost)
    except Exception as error:  # a callback must not raise into the event loop
        LOG.warning("flux: giving back a cancelled waiter's hit failed: %s", error)


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        LOG.warning("flux: giving back a cancelled waiter's hit failed: %s", task.exception())
