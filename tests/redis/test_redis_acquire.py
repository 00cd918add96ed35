"""acquire / aacquire on Redis: paced by Redis's clock, and a cancelled waiter consumes nothing.

Real clocks, short periods (5 per 0.5 s: a burst of 5, then one every E = 0.1 s); lower bounds
strict, upper bounds loose. A hit in flight when its waiter is cancelled is made to last with a
proxy that delays Redis.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pacing
import pytest
from delay_proxy import DelayProxy
from fluxredis import redis_config
from redis_server import RedisServer

from flux import FluxConfig, RateLimiter, RateLimitExceeded

REQUESTS, PERIOD = 5, 0.5
E = PERIOD / REQUESTS
SLACK = 0.02  # Redis's clock against this process's monotonic clock, and rounding to µs
LOOSE = 5.0


class Recording(RateLimiter):
    """A limiter that records what a cancelled waiter gives back (and gives it back)."""

    refunds: list[tuple[str, int]]

    def refund(self, key: str, cost: int = 1) -> Any:
        self.refunds.append((key, cost))
        return super().refund(key, cost)


def recording(config: FluxConfig, requests: int = REQUESTS, period: float = PERIOD) -> Recording:
    lim = Recording(requests, period, config=config)
    lim.refunds = []
    return lim


def assert_paced(times: list[float], start: float) -> None:
    pacing.assert_paced(times, start, REQUESTS, E, SLACK)


@pytest.fixture
def slow(redis: RedisServer) -> Iterator[DelayProxy]:
    """The session's Redis, 300 ms further away: a hit stays in flight long enough to cancel."""
    with DelayProxy(redis.port, 300.0) as proxy:
        yield proxy


def test_acquire_waits_out_the_quota(redis: RedisServer) -> None:
    lim = RateLimiter(REQUESTS, PERIOD, config=redis_config(redis.url))
    start = time.monotonic()
    assert all(lim.acquire("k").allowed for _ in range(2 * REQUESTS))
    elapsed = time.monotonic() - start
    assert REQUESTS * E - SLACK <= elapsed < REQUESTS * E + LOOSE


def test_acquire_timeout_raises_at_once(redis: RedisServer) -> None:
    lim = RateLimiter(1, 10.0, config=redis_config(redis.url))
    lim.acquire("k")
    start = time.monotonic()
    with pytest.raises(RateLimitExceeded) as caught:
        lim.acquire("k", timeout=1.0)
    assert time.monotonic() - start < 0.5
    assert not caught.value.result.allowed


def test_threads_never_exceed_the_limit(redis: RedisServer) -> None:
    lim = RateLimiter(REQUESTS, PERIOD, config=redis_config(redis.url))
    times, start = pacing.acquire_in_threads(lim, "shared")
    assert len(times) == 20
    assert_paced(times, start)


def test_aacquire_tasks_never_exceed_the_limit(redis: RedisServer) -> None:
    lim = RateLimiter(REQUESTS, PERIOD, config=redis_config(redis.url))

    async def run() -> tuple[float, list[float]]:
        times: list[float] = []

        async def one() -> None:
            assert (await lim.aacquire("shared")).allowed
            times.append(time.monotonic())

        start = time.monotonic()
        await asyncio.gather(*(one() for _ in range(20)))
        return start, times

    start, times = asyncio.run(run())
    assert len(times) == 20
    assert_paced(times, start)
    assert max(times) - start < 15 * E + LOOSE


def test_aacquire_timeout_raises_at_once(redis: RedisServer) -> None:
    lim = RateLimiter(1, 10.0, config=redis_config(redis.url))

    async def run() -> float:
        await lim.aacquire("k")
        start = time.monotonic()
        with pytest.raises(RateLimitExceeded):
            await lim.aacquire("k", timeout=1.0)
        return time.monotonic() - start

    assert asyncio.run(run()) < 0.5


def _cancel_in_flight(lim: RateLimiter, key: str) -> None:
    """Start an aacquire whose hit is in flight (delayed by the proxy), cancel it, and let the
    shielded hit finish."""

    async def run() -> None:
        waiter = asyncio.ensure_future(lim.aacquire(key))
        await asyncio.sleep(0.1)  # the hit is on its way to Redis, 300 ms away
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await asyncio.sleep(1.0)  # the hit lands; its give-back runs

    asyncio.run(run())


def test_a_waiter_cancelled_during_an_allowed_hit_gives_it_back(slow: DelayProxy) -> None:
    lim = recording(redis_config(slow.url, timeout_ms=3000), requests=3, period=60)
    lim.hit("warm-up")  # the connection open and the scripts loaded
    _cancel_in_flight(lim, "k")
    assert lim.refunds == [("k", 1)]


def test_a_waiter_cancelled_during_a_denied_hit_gives_nothing_back(slow: DelayProxy) -> None:
    lim = recording(redis_config(slow.url, timeout_ms=3000), requests=1, period=60)
    lim.hit("k")
    _cancel_in_flight(lim, "k")
    assert lim.refunds == []


def test_a_cancelled_waiter_consumes_nothing(slow: DelayProxy) -> None:
    config = redis_config(slow.url, timeout_ms=3000)
    lim = RateLimiter(3, 60, config=config)
    lim.hit("warm-up")
    _cancel_in_flight(lim, "k")
    # The whole quota is still there: exactly 3 of 5 pass.
    assert sum(lim.hit("k").allowed for _ in range(5)) == 3


def test_wait_on_an_async_function_with_stacked_redis_limits(redis: RedisServer) -> None:
    from flux import rate_limit
    from flux.decorators import limits_of

    config = redis_config(redis.url)
    calls: list[float] = []

    @rate_limit(requests=REQUESTS, period=PERIOD, wait=True, config=config)
    @rate_limit(requests=100, period=60, config=config)
    async def call_api() -> None:
        calls.append(time.monotonic())

    async def run() -> None:
        await asyncio.gather(*(call_api() for _ in range(2 * REQUESTS)))

    start = time.monotonic()
    asyncio.run(run())
    assert len(calls) == 2 * REQUESTS
    assert_paced(calls, start)
    # All or nothing: the hourly limit counted each call once, never a denied try.
    assert limits_of(call_api)[1].limiter.peek("global").remaining == 100 - 2 * REQUESTS
