"""Waiting instead of failing: RateLimiter.acquire / aacquire and rate_limit(wait=True).

Real clocks and short periods: 5 per 0.5 s is one hit every E = 0.1 s after a burst of 5.
Lower bounds are strict (a waiter must never pass early); upper bounds are loose, since the
machines running this are shared and noisy.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pacing
import pytest

from flux import FluxConfig, RateLimiter, RateLimitExceeded, rate_limit
from flux.decorators import limits_of

REQUESTS, PERIOD = 5, 0.5
E = PERIOD / REQUESTS
SLACK = 0.01  # clock granularity between this process's monotonic clock and the limiter's
LOOSE = 3.0  # an upper bound that only catches a waiter stuck far too long


def limiter(requests: int = REQUESTS, period: float = PERIOD, **kwargs: Any) -> RateLimiter:
    return RateLimiter(requests, period, config=FluxConfig(), **kwargs)


def assert_paced(times: list[float], start: float, burst: int = REQUESTS, every: float = E) -> None:
    """The k-th pass (sorted) came no earlier than the quota allows: a burst, then one per E."""
    pacing.assert_paced(times, start, burst, every, SLACK)


# --- acquire ---------------------------------------------------------------------------------


def test_acquire_over_the_limit_takes_the_expected_time() -> None:
    lim = limiter()
    start = time.monotonic()
    results = [lim.acquire("k") for _ in range(2 * REQUESTS)]
    elapsed = time.monotonic() - start
    assert all(r.allowed for r in results)
    # 5 at once, then 5 more one E apart: the 10th passes 5 E = 0.5 s after the first.
    assert elapsed >= REQUESTS * E - SLACK
    assert elapsed < REQUESTS * E + LOOSE
    assert not lim.hit("k").allowed  # and all ten were counted


def test_acquire_returns_at_once_when_allowed() -> None:
    lim = limiter()
    start = time.monotonic()
    result = lim.acquire("k", cost=2)
    assert result.allowed and result.remaining == REQUESTS - 2
    assert time.monotonic() - start < 0.5


def test_timeout_raises_at_once_when_the_wait_would_pass_it() -> None:
    lim = limiter(1, 10.0)
    lim.acquire("k")
    start = time.monotonic()
    with pytest.raises(RateLimitExceeded) as caught:
        lim.acquire("k", timeout=1.0)
    # No pointless sleep: the wait (10 s) could never end within 1 s.
    assert time.monotonic() - start < 0.5
    assert caught.value.result is not None and not caught.value.result.allowed
    assert caught.value.retry_after == pytest.approx(10.0, abs=0.5)


def test_timeout_zero_is_one_try() -> None:
    lim = limiter()
    for _ in range(REQUESTS):
        assert lim.acquire("k", timeout=0).allowed
    start = time.monotonic()
    with pytest.raises(RateLimitExceeded):
        lim.acquire("k", timeout=0)
    assert time.monotonic() - start < 0.05 + LOOSE / 10


def test_timeout_long_enough_waits_then_passes() -> None:
    lim = limiter()
    for _ in range(REQUESTS):
        lim.hit("k")
    start = time.monotonic()
    assert lim.acquire("k", timeout=0.5).allowed
    assert time.monotonic() - start >= E - SLACK


def test_timeout_is_never_slept_past() -> None:
    lim = limiter(2, 1.0)  # E = 0.5 s
    lim.hit("k")
    lim.hit("k")
    start = time.monotonic()
    with pytest.raises(RateLimitExceeded):
        lim.acquire("k", timeout=0.3)
    assert time.monotonic() - start < 0.3


@pytest.mark.parametrize("cost", [0, -1, REQUESTS + 1])
def test_acquire_checks_cost_as_hit(cost: int) -> None:
    with pytest.raises(ValueError):
        limiter().acquire("k", cost=cost)


@pytest.mark.parametrize(("timeout", "error"), [(-1, ValueError), ("1", TypeError)])
def test_bad_timeout(timeout: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        limiter().acquire("k", timeout=timeout)


def test_threads_acquiring_together_never_exceed_the_limit() -> None:
    lim = limiter()
    times, start = pacing.acquire_in_threads(lim, "shared")
    assert len(times) == 20
    assert_paced(times, start)
    # 20 passes: 5 at once and 15 one E apart.
    assert max(times) - start >= 15 * E - SLACK


# --- aacquire --------------------------------------------------------------------------------


def test_aacquire_waits_without_blocking_the_loop() -> None:
    lim = limiter()

    async def run() -> tuple[float, int]:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.ensure_future(ticker())
        start = time.monotonic()
        for _ in range(2 * REQUESTS):
            assert (await lim.aacquire("k")).allowed
        elapsed = time.monotonic() - start
        stop.set()
        await task
        return elapsed, ticks

    elapsed, ticks = asyncio.run(run())
    assert elapsed >= REQUESTS * E - SLACK
    assert elapsed < REQUESTS * E + LOOSE
    assert ticks >= 10  # the loop ran other work while the waiter slept


def test_aacquire_timeout_raises_at_once() -> None:
    lim = limiter(1, 10.0)
    lim.hit("k")

    async def run() -> float:
        start = time.monotonic()
        with pytest.raises(RateLimitExceeded):
            await lim.aacquire("k", timeout=2.0)
        return time.monotonic() - start

    assert asyncio.run(run()) < 0.5


def test_cancelled_aacquire_consumes_nothing() -> None:
    lim = limiter()

    async def run() -> int:
        for _ in range(REQUESTS):
            lim.hit("k")
        exhausted = time.monotonic()
        waiters = [asyncio.ensure_future(lim.aacquire("k")) for _ in range(3)]
        await asyncio.sleep(E / 4)  # all three are asleep, waiting
        for waiter in waiters:
            waiter.cancel()
        for waiter in waiters:
            with pytest.raises(asyncio.CancelledError):
                await waiter
        # Back to full capacity: exactly the whole burst passes, nothing went to the waiters.
        await asyncio.sleep(PERIOD + 0.05 - (time.monotonic() - exhausted))
        return sum(lim.hit("k").allowed for _ in range(2 * REQUESTS))

    assert asyncio.run(run()) == REQUESTS


def test_tasks_acquiring_together_never_exceed_the_limit() -> None:
    lim = limiter()

    async def run() -> tuple[float, list[float]]:
        times: list[float] = []

        async def one() -> None:
            await lim.aacquire("shared")
            times.append(time.monotonic())

        start = time.monotonic()
        await asyncio.gather(*(one() for _ in range(20)))
        return start, times

    start, times = asyncio.run(run())
    assert len(times) == 20
    assert_paced(times, start)
    assert max(times) - start < 15 * E + LOOSE


# --- rate_limit(wait=True) -------------------------------------------------------------------


def test_wait_on_a_sync_function() -> None:
    calls = []

    @rate_limit(requests=REQUESTS, period=PERIOD, wait=True, config=FluxConfig())
    def call_api(n: int) -> int:
        calls.append(time.monotonic())
        return n

    start = time.monotonic()
    assert [call_api(n) for n in range(2 * REQUESTS)] == list(range(2 * REQUESTS))
    assert_paced(calls, start)
    assert calls[-1] - start >= REQUESTS * E - SLACK


def test_wait_on_an_async_function() -> None:
    calls = []

    @rate_limit(requests=REQUESTS, period=PERIOD, wait=True, config=FluxConfig())
    async def call_api(n: int) -> int:
        calls.append(time.monotonic())
        return n

    async def run() -> list[int]:
        return list(await asyncio.gather(*(call_api(n) for n in range(2 * REQUESTS))))

    start = time.monotonic()
    assert sorted(asyncio.run(run())) == list(range(2 * REQUESTS))
    assert_paced(calls, start)
    assert max(calls) - start >= REQUESTS * E - SLACK


def test_wait_covers_stacked_limits_all_or_nothing() -> None:
    config = FluxConfig()

    @rate_limit(requests=2, period=0.2, wait=True, config=config)
    @rate_limit(requests=100, period=60, config=config)
    def work() -> None:
        pass

    start = time.monotonic()
    for _ in range(6):
        work()
    # 2 at once, then one every 0.1 s: the 6th passes 0.4 s in.
    assert time.monotonic() - start >= 0.4 - SLACK
    _fast, slow = limits_of(work)
    # The slow limit counted each call once: denied tries took nothing from it.
    assert slow.limiter.peek("global").remaining == 100 - 6


def test_wait_timeout_raises() -> None:
    @rate_limit(requests=1, period=10, wait=True, wait_timeout=0.5, config=FluxConfig())
    def work() -> None:
        pass

    work()
    start = time.monotonic()
    with pytest.raises(RateLimitExceeded):
        work()
    assert time.monotonic() - start < 0.5


def test_without_wait_a_plain_function_still_raises() -> None:
    @rate_limit(requests=1, period=10, config=FluxConfig())
    def work() -> None:
        pass

    work()
    with pytest.raises(RateLimitExceeded):
        work()


def test_bad_wait_timeout_fails_at_decoration() -> None:
    with pytest.raises(ValueError):
        rate_limit(requests=1, period=10, wait=True, wait_timeout=-1, config=FluxConfig())


def test_wait_never_holds_a_web_request() -> None:
    starlette = pytest.importorskip("starlette")
    del starlette
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    @rate_limit(requests=1, period=10, wait=True, config=FluxConfig())
    async def view(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    client = TestClient(Starlette(routes=[Route("/", view)]))
    assert client.get("/").status_code == 200
    start = time.monotonic()
    denied = client.get("/")
    assert denied.status_code == 429
    assert int(denied.headers["Retry-After"]) >= 9
    assert time.monotonic() - start < 1.0
