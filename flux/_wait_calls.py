"""``rate_limit(..., wait=True)``: a plain function call waits for its limits instead of raising.

Only plain calls wait (no framework request among the arguments): a web request is never
held, it gets its 429 at once, as without ``wait``. A waiting call hits all the function's
limits together, all or nothing, as every decorated call does, and sleeps the longest retry
time among the limits that denied it before trying again (see :mod:`flux._wait`).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Callable, Sequence
from time import perf_counter
from typing import Any

from flux._wait import Deadline, pause, shielded
from flux.integrations._check import Check
from flux.integrations._evaluate import checked, evaluate, plan, report_failure
from flux.integrations._failure import unavailable
from flux.integrations._hit import ahit_all
from flux.integrations._rule import BadCost, Rule

__all__ = ["waiting_wrapper"]

Locate = Callable[[tuple[Any, ...], dict[str, Any]], tuple[Any, Any, Any]]


def _longest_wait(check: Check) -> float:
    return pause(max(r.retry_after for r in check.results if not r.allowed))


def wait_sync(
    rules: Sequence[Rule],
    args: Sequence[Any],
    kwargs: dict[str, Any],
    endpoint: str,
    timeout: float | None,
) -> None:
    """Return once the call's limits allowed it (counted); raise RateLimitExceeded when
    ``timeout`` would pass first."""
    deadline = Deadline(timeout)
    while True:
        check = evaluate(rules, None, None, args, kwargs, endpoint)
        if not isinstance(check, Check) or not check.denied:
            return  # allowed, or no limit applied (a bad cost under limits that fail open)
        wait = _longest_wait(check)
        if not deadline.allows(wait):
            raise check.exception()
        time.sleep(wait)


async def wait_async(
    rules: Sequence[Rule],
    args: Sequence[Any],
    kwargs: dict[str, Any],
    endpoint: str,
    timeout: float | None,
) -> None:
    """:func:`wait_sync` for coroutine functions: the loop is never blocked, and a cancelled
    call consumes nothing (a Redis hit in flight is shielded and given back if allowed)."""
    deadline = Deadline(timeout)
    while True:
        check = await _attempt(rules, args, kwargs, endpoint)
        if check is None or not check.denied:
            return
        wait = _longest_wait(check)
        if not deadline.allows(wait):
            raise check.exception()
        await asyncio.sleep(wait)


async def _attempt(
    rules: Sequence[Rule], args: Sequence[Any], kwargs: dict[str, Any], endpoint: str
) -> Check | None:
    """One all-or-nothing hit of a plain call, as :func:`aevaluate` makes it, shielded."""
    if not any(rule.limit.awaitable for rule in rules):  # answered inline: nothing to cancel
        found = evaluate(rules, None, None, args, kwargs, endpoint)
        return found if isinstance(found, Check) else None
    try:
        chosen = plan(rules, None, None, args, kwargs)
    except BadCost as error:
        unavailable(rules, None, None, error)  # raises, unless every limit fails open
        return None
    started = perf_counter()
    try:
        results = await shielded(ahit_all(chosen.items, endpoint), list, chosen.items)
    except asyncio.CancelledError:
        raise
    except Exception as error:
        report_failure(chosen, error, started, endpoint)
        raise
    return checked(chosen, results, started, endpoint, None, None)


def waiting_wrapper(
    func: Callable[..., Any],
    limited: Callable[..., Any],
    rules: Sequence[Rule],
    locate: Locate,
    endpoint: str,
    timeout: float | None,
) -> Callable[..., Any]:
    """Wrap ``limited`` (the usual ``rate_limit`` wrapper of ``func``) so that plain calls
    wait for their limits; calls with a framework request go to ``limited`` unchanged."""
    Deadline(timeout)  # a bad timeout fails at decoration time
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_waiting(*args: Any, **kwargs: Any) -> Any:
            # locate() may take FastAPI's injected parameters out: look on a copy.
            if locate(args, dict(kwargs))[0] is not None:
                return await limited(*args, **kwargs)
            await wait_async(rules, args, kwargs, endpoint, timeout)
            return await func(*args, **kwargs)

        return async_waiting

    @functools.wraps(func)
    def sync_waiting(*args: Any, **kwargs: Any) -> Any:
        if locate(args, dict(kwargs))[0] is not None:
            return limited(*args, **kwargs)
        wait_sync(rules, args, kwargs, endpoint, timeout)
        return func(*args, **kwargs)

    return sync_waiting
