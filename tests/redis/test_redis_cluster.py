"""RateLimiter on a Redis Cluster of three masters (started here, killed at the end)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from fluxredis import redis_config
from redis_server import RedisCluster

from flux import FluxConfig, RateLimiter, _flux, preload_scripts
from flux.config import FluxSettings, RedisConfig

HOUR = 3600.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    with RedisCluster() as started:
        yield started


def test_limits_hold_on_a_cluster_seeded_by_url(cluster: RedisCluster) -> None:
    config = redis_config(f"redis://{cluster.addresses[0]}", cluster=True)
    lim = RateLimiter(3, HOUR, config=config)
    assert lim.store is not None and "cluster" in lim.store.target
    # Identities spread over the slots of all three masters.
    for n in range(30):
        assert [lim.hit(f"user-{n}").allowed for _ in range(4)] == [True, True, True, False]
    lim.reset("user-0")
    assert lim.peek("user-0").remaining == 3


def test_multi_limit_hits_and_async_hits_on_a_cluster(cluster: RedisCluster) -> None:
    config = FluxConfig(
        redis=RedisConfig(cluster=tuple(cluster.addresses)),
        flux=FluxSettings(key_prefix="c:"),
        storage="redis",
    )
    second = RateLimiter(2, 1, config=config)
    hour = RateLimiter(100, HOUR, policy="token_bucket", config=config)
    for _ in range(2):
        assert all(r.allowed for r in _flux.hit_many([(second, "ip", 1), (hour, "ip", 1)]))
    denied = _flux.hit_many([(second, "ip", 1), (hour, "ip", 1)])
    assert [r.allowed for r in denied] == [False, True]
    assert hour.peek("ip").remaining == 98
    with pytest.raises(ValueError, match="hash slot"):
        _flux.hit_many([(second, "a", 1), (hour, "b", 1)])

    async def run() -> list[bool]:
        results = await asyncio.gather(*(hour.ahit(f"async-{n}") for n in range(50)))
        return [r.allowed for r in results]

    assert asyncio.run(run()) == [True] * 50


def test_preload_scripts_reaches_every_master(cluster: RedisCluster) -> None:
    config = redis_config(f"redis://{cluster.addresses[0]}", cluster=True)
    for node in cluster.nodes:
        node.command("SCRIPT", "FLUSH")
    loaded = preload_scripts(config)
    assert loaded > 0
    for node in cluster.nodes:
        info = str(node.command("INFO", "memory"))
        assert f"number_of_cached_scripts:{loaded}" in info, node.port
