"""Async hits: the event loop never waits on Redis, and concurrent hits share round trips.

The overlap is asserted on counts, never on time: 1000 concurrent ``ahit`` calls through a
proxy that delays Redis by 2 ms must take far fewer round trips than hits (the store's
``async_batches`` and ``round_trips`` counters). The bench measures the time.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterator

import pytest
from delay_proxy import DelayProxy
from fluxredis import redis_config
from redis_server import RedisServer

from flux import ConnectionError, FluxConfig, RateLimiter, RateLimitResult, _flux

HOUR = 3600.0
YEAR = 365 * 24 * HOUR


@pytest.fixture
def delayed(redis: RedisServer) -> Iterator[DelayProxy]:
    """The session's Redis, 2 ms further away."""
    with DelayProxy(redis.port, 2.0) as proxy:
        yield proxy


def test_ahit_gives_the_same_decisions_as_hit(redis: RedisServer) -> None:
    config = redis_config(redis.url)
    lim = RateLimiter(3, 60, config=config)

    async def run() -> list[RateLimitResult]:
        return [await lim.ahit("a") for _ in range(4)]

    results = asyncio.run(run())
    assert [r.allowed for r in results] == [True, True, True, False]
    assert [r.remaining for r in results] == [2, 1, 0, 0]
    assert {r.source for r in results} <= {"redis", "deny_cache"}
    with pytest.raises(ValueError, match="cost 4"):
        asyncio.run(lim.ahit("a", cost=4))


def test_thousand_concurrent_hits_share_a_few_round_trips(delayed: DelayProxy) -> None:
    lim = RateLimiter(100, HOUR, config=redis_config(delayed.url))
    wide = RateLimiter(10**6, HOUR, config=redis_config(delayed.url), policy="sliding_window")
    redis_store = lim.store
    assert redis_store is not None and wide.store is redis_store
    lim.hit("warm-up")  # a connection open, the scripts loaded

    async def run() -> tuple[list[RateLimitResult], list[RateLimitResult]]:
        shared = asyncio.gather(*(lim.ahit("one-key") for _ in range(1000)))
        spread = asyncio.gather(*(wide.ahit(f"client-{i}") for i in range(1000)))
        return await shared, await spread

    before = redis_store.stats()
    shared, spread = asyncio.run(run())
    after = redis_store.stats()
    assert sum(r.allowed for r in shared) == 100  # exact, concurrency or not
    assert all(r.allowed and r.remaining == 10**6 - 1 for r in spread)
    batches = int(after["async_batches"]) - int(before["async_batches"])
    round_trips = int(after["round_trips"]) - int(before["round_trips"])
    assert int(after["async_hits"]) - int(before["async_hits"]) <= 2000
    # 2000 hits, each alone would be a round trip of >= 2 ms; pipelined they take a handful
    # (bounded at 1/20 of that, not a handful: on a loaded 2-core machine the submitting event
    # loop is descheduled now and then, and the I/O threads send what has queued so far).
    assert batches < 100, after
    assert round_trips < 100, after
    assert int(after["async_max_batch"]) > 20


def test_the_event_loop_runs_while_redis_is_silent(
    make_server: Callable[..., RedisServer],
) -> None:
    server = make_server()
    lim = _flux.Limiter(5, 60, store=_flux.RedisStore(server.url, timeout_ms=1000))
    lim.hit("k")
    server.freeze()

    async def run() -> int:
        pending = asyncio.ensure_future(lim.ahit("k"))
        ticks = 0
        while not pending.done():
            await asyncio.sleep(0)
            ticks += 1
        assert (await pending).fail_open
        return ticks

    try:
        ticks = asyncio.run(run())
    finally:
        server.thaw()
    # A loop blocked on the round trip could not have turned even once before it ended.
    assert ticks > 100


def test_ahit_needs_a_running_loop(redis: RedisServer) -> None:
    lim = _flux.Limiter(5, 60, store=_flux.RedisStore(redis.url))
    with pytest.raises(RuntimeError, match="no running event loop"):
        lim.ahit("k")


def test_loops_in_several_threads_and_loops_that_come_and_go(redis: RedisServer) -> None:
    # A year's quota: nothing refills while the test runs, so remaining counts down exactly.
    lim = RateLimiter(10**6, YEAR, config=redis_config(redis.url))
    errors: list[BaseException] = []

    def thread(n: int) -> None:
        async def run() -> None:
            results = await asyncio.gather(*(lim.ahit(f"t{n}") for _ in range(200)))
            remaining = sorted((r.remaining for r in results), reverse=True)
            assert remaining == list(range(10**6 - 1, 10**6 - 201, -1))

        try:
            for _ in range(5):
                lim.reset(f"t{n}")
                asyncio.run(run())
        except BaseException as exc:  # reported below
            errors.append(exc)

    fds = len(os.listdir("/proc/self/fd"))
    threads = [threading.Thread(target=thread, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    # 20 loops came and went: the wakers of closed loops are dropped, not leaked.
    asyncio.run(lim.ahit("last"))
    assert len(os.listdir("/proc/self/fd")) - fds < 12


def test_cancelled_hits_leave_the_loop_healthy(delayed: DelayProxy) -> None:
    lim = RateLimiter(10**6, HOUR, config=redis_config(delayed.url))

    async def run() -> RateLimitResult:
        doomed = [asyncio.ensure_future(lim.ahit("k")) for _ in range(50)]
        await asyncio.sleep(0)
        for task in doomed:
            task.cancel()
        await asyncio.gather(*doomed, return_exceptions=True)
        return await lim.ahit("k")

    assert asyncio.run(run()).allowed


def test_ahit_many_is_atomic_and_async(redis: RedisServer) -> None:
    config = redis_config(redis.url)
    second = RateLimiter(2, 1, config=config)
    hour = RateLimiter(100, HOUR, policy="sliding_log", config=config)

    async def run() -> list[list[RateLimitResult]]:
        return list(
            await asyncio.gather(
                *(RateLimiter.ahit_many([(second, "ip", 1), (hour, "ip", 1)]) for _ in range(5))
            )
        )

    batches = asyncio.run(run())
    passed = [all(r.allowed for r in batch) for batch in batches]
    assert passed.count(True) == 2
    assert hour.peek("ip").remaining == 98  # denied batches took nothing from the hourly limit


def test_ahit_on_the_embedded_store_needs_no_loop_machinery() -> None:
    lim = RateLimiter(2, 60, config=FluxConfig())
    native = _flux.Limiter(2, 60)

    async def run() -> list[bool]:
        wrapped = [(await lim.ahit("k")).allowed for _ in range(3)]
        first = await native.ahit("k")  # a plain awaitable, already done
        gathered = await asyncio.gather(native.ahit("k"), native.ahit("k"))
        many = await _flux.ahit_many([(native, "m", 1)])
        return [*wrapped, first.allowed, *(r.allowed for r in gathered), many[0].allowed]

    assert asyncio.run(run()) == [True, True, False, True, True, False, True]


def test_a_bad_key_among_concurrent_hits_fails_alone(redis: RedisServer) -> None:
    # The hits of one pipeline go to Redis's batch script together: a key of the wrong type
    # must fail its own hit only, and every other hit must be decided and counted once.
    lim = _flux.Limiter(10**6, YEAR, store=_flux.RedisStore(redis.url, fail_silently=False))
    redis.command("RPUSH", f"{lim.prefix}{{bad}}:gcra", "not a limiter")
    keys = ["bad" if i == 50 else f"good-{i % 10}" for i in range(100)]

    async def run() -> list[RateLimitResult | BaseException]:
        return list(await asyncio.gather(*(lim.ahit(k) for k in keys), return_exceptions=True))

    results = asyncio.run(run())
    bad = results[50]
    assert isinstance(bad, ConnectionError) and "WRONGTYPE" in str(bad), bad
    assert all(
        isinstance(r, RateLimitResult) and r.allowed for i, r in enumerate(results) if i != 50
    )
    counted = [10**6 - lim.peek(f"good-{k}").remaining for k in range(10)]
    assert counted == [9] + [10] * 9  # hit 50 would have been good-0's tenth
    assert redis.command("LLEN", f"{lim.prefix}{{bad}}:gcra") == 1


def test_script_flush_under_concurrent_hits_counts_each_once(redis: RedisServer) -> None:
    lim = RateLimiter(10**6, YEAR, config=redis_config(redis.url, fail_silently=False))

    async def run() -> None:
        for _ in range(5):
            redis.command("SCRIPT", "FLUSH")
            results = await asyncio.gather(*(lim.ahit(f"k{i % 7}") for i in range(700)))
            assert all(r.source == "redis" for r in results)

    asyncio.run(run())
    assert [10**6 - lim.peek(f"k{i}").remaining for i in range(7)] == [500] * 7
