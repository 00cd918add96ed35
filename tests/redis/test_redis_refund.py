"""RateLimiter.refund and arefund on Redis: the refund vectors replay exactly through the Lua
scripts (a ManualClock replaces the server's time), a refund is one round trip, lifts the deny
cache's verdict at once, deletes a key it brings back to full, and follows the failure policy."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from fluxredis import redis_config
from redis_server import RedisServer
from vectors import REFUND_VECTORS, limiter_for, load, replay

from flux import ConnectionError, ManualClock, RateLimiter

HOUR = 3600.0


@pytest.mark.parametrize("path", REFUND_VECTORS, ids=[p.stem for p in REFUND_VECTORS])
def test_refund_vector_replays_exactly_on_redis(redis: RedisServer, path: Path) -> None:
    vector = load(path)
    clock = ManualClock(0)
    replay(path, vector, limiter_for(vector, clock, redis_config(redis.url)), clock)


def test_a_refund_is_one_round_trip_and_lifts_the_deny_cache(redis: RedisServer) -> None:
    lim = RateLimiter(2, HOUR, config=redis_config(redis.url))
    assert lim.hit("a", cost=2).remaining == 0
    assert not lim.hit("a").allowed
    assert lim.hit("a").source == "deny_cache"
    store = lim.store
    assert store is not None
    before = int(store.stats()["round_trips"])
    refunded = lim.refund("a")
    assert store.stats()["round_trips"] == before + 1
    assert (refunded.allowed, refunded.remaining, refunded.source) == (True, 1, "redis")
    assert lim.hit("a").allowed
    # Back to full: the key is deleted, as it would have expired.
    assert lim.refund("a", 2).remaining == 2
    assert redis.command("KEYS", "*") == []
    with pytest.raises(ValueError, match="cost 3"):
        lim.refund("a", 3)


def test_arefund_on_redis(redis: RedisServer) -> None:
    lim = RateLimiter(1, HOUR, policy="sliding_window", config=redis_config(redis.url))

    async def run() -> tuple[bool, int, bool]:
        await lim.ahit("a")
        denied = (await lim.ahit("a")).allowed
        refunded = await lim.arefund("a")
        return denied, refunded.remaining, (await lim.ahit("a")).allowed

    assert asyncio.run(run()) == (False, 1, True)


def test_arefund_is_queued_for_the_io_threads_and_fails_when_awaited(
    make_server: Callable[..., RedisServer],
) -> None:
    server = make_server()
    url = server.url
    lim = RateLimiter(2, HOUR, config=redis_config(url))
    store = lim.store
    assert store is not None

    async def refunds() -> list[tuple[bool, int, str]]:
        await lim.ahit("a", cost=2)
        before = int(store.stats()["async_hits"])
        # Concurrent refunds, each answered with its own key's result; none waits in a thread.
        results = await asyncio.gather(lim.arefund("a"), *(lim.arefund(f"k{i}") for i in range(20)))
        assert int(store.stats()["async_hits"]) == before + 21
        return [(r.allowed, r.remaining, r.source) for r in results]

    results = asyncio.run(refunds())
    assert results[0] == (True, 1, "redis")
    assert results[1:] == [(True, 2, "redis")] * 20  # unknown keys stay unknown
    assert len(server.command("KEYS", "*")) == 1  # only "a": refunds create no state
    with pytest.raises(ValueError, match="cost 3"):
        asyncio.run(lim.arefund("a", 3))
    server.kill()
    strict = RateLimiter(2, HOUR, config=redis_config(url, fail_silently=False, timeout_ms=200))
    with pytest.raises(ConnectionError):
        asyncio.run(strict.arefund("a"))
    lenient = RateLimiter(2, HOUR, config=redis_config(url, timeout_ms=200))
    assert asyncio.run(lenient.arefund("a")).fail_open


def test_a_failed_refund_follows_the_failure_policy(
    make_server: Callable[..., RedisServer],
) -> None:
    server = make_server()
    url = server.url
    server.kill()
    lenient = RateLimiter(2, HOUR, config=redis_config(url, timeout_ms=200))
    result = lenient.refund("a")
    assert result.fail_open
    strict = RateLimiter(2, HOUR, config=redis_config(url, fail_silently=False, timeout_ms=200))
    with pytest.raises(ConnectionError):
        strict.refund("a")
