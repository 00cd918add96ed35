"""RateLimiter on storage "redis": the same API and answers as on the embedded store."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
from fluxredis import redis_config
from redis_server import RedisServer
from vectors import VECTORS, limiter_for, load, replay

from flux import (
    ConfigError,
    FluxConfig,
    ManualClock,
    RateLimiter,
    RateLimitExceeded,
    RateLimitResult,
    _flux,
    load_config,
)
from flux._flux import ALGORITHMS
from flux._redis import shared_store
from flux.config import LimitConfig

HOUR = 3600.0


def test_hit_peek_reset_and_cost_like_the_embedded_store(redis: RedisServer) -> None:
    config = redis_config(redis.url)
    lim = RateLimiter(3, 60, config=config)
    results = [lim.hit("a") for _ in range(4)]
    assert [r.allowed for r in results] == [True, True, True, False]
    assert [r.remaining for r in results] == [2, 1, 0, 0]
    assert all(r.source == "redis" and not r.fail_open for r in results)
    assert results[3].retry_after == pytest.approx(20.0, abs=0.5)
    peeked = lim.peek("a")
    assert not peeked.allowed and peeked.remaining == 0
    lim.reset("a")
    assert lim.peek("a").remaining == 3
    assert lim.hit("a", cost=3).remaining == 0
    assert not lim.is_allowed("a")
    with pytest.raises(RateLimitExceeded) as denied:
        lim.require("a")
    assert denied.value.retry_after > 0
    with pytest.raises(ValueError, match="cost 4"):
        lim.hit("b", cost=4)
    with pytest.raises(ValueError, match="cost 0"):
        lim.hit("b", cost=0)


def test_state_lives_in_redis_under_the_prefixed_key(redis: RedisServer) -> None:
    config = redis_config(redis.url, key_prefix="app:", limits={"api": LimitConfig(10, 60)})
    lim = RateLimiter(config=config, name="api")
    lim.hit("10.0.0.1")
    assert redis.command("KEYS", "*") == ["app:api:{10.0.0.1}:gcra"]
    assert lim.prefix == "app:api:"
    assert len(lim) == 1
    # A second process (here: a second limiter on its own store) sees the same state.
    other = _flux.Limiter(
        10, 60, store=_flux.RedisStore(redis.url, key_prefix="app:"), prefix="api:"
    )
    assert other.peek("10.0.0.1").remaining == 9


def test_limiters_of_one_configuration_share_one_store(redis: RedisServer) -> None:
    config = redis_config(redis.url)
    a, b = RateLimiter(5, 1, config=config), RateLimiter(50, 60, config=config)
    assert a.store is b.store is shared_store(config)
    assert RateLimiter(5, 1, config=redis_config(redis.url, key_prefix="x:")).store is not a.store
    assert a.storage == "redis" and "storage='redis'" in repr(a)
    assert a.fail_silently is True
    assert RateLimiter(5, 1, config=FluxConfig()).store is None


def test_every_algorithm_counts_exactly_on_redis(redis: RedisServer) -> None:
    config = redis_config(redis.url)
    for policy in ALGORITHMS:
        lim = RateLimiter(5, HOUR, policy=policy, config=config)
        allowed = [lim.hit("k").allowed for _ in range(8)]
        assert allowed == [True] * 5 + [False] * 3, policy


def test_named_limit_from_flux_toml(redis: RedisServer, tmp_path: Path) -> None:
    path = tmp_path / "flux.toml"
    path.write_text(
        f'[redis]\nurl = "{redis.url}"\n\n'
        '[rate_limits.login]\nrequests = 2\nperiod = 60\npolicy = "sliding_log"\n'
    )
    config = load_config(path)
    assert config.storage == "redis"
    lim = RateLimiter.from_config("login", config=config)
    assert [lim.hit("u").allowed for _ in range(3)] == [True, True, False]
    assert redis.command("KEYS", "*") == ["flux:login:{u}:sliding_log"]


def test_settings_the_store_cannot_use_are_config_errors(redis: RedisServer) -> None:
    config = redis_config("rediss://:secret@127.0.0.1:1")  # this build has no TLS
    with pytest.raises(ConfigError, match="redis-tls") as error:
        RateLimiter(1, 1, config=config)
    assert error.value.key == "redis"
    assert "secret" not in str(error.value)
    with pytest.raises(ValueError, match="max_keys"):
        RateLimiter(1, 1, config=redis_config(redis.url), max_keys=10)


@pytest.mark.parametrize("path", VECTORS, ids=[p.stem for p in VECTORS])
def test_vectors_replay_exactly_through_python_on_redis(redis: RedisServer, path: Path) -> None:
    vector = load(path)
    clock = ManualClock(0)
    replay(path, vector, limiter_for(vector, clock, redis_config(redis.url)), clock)


def test_hit_many_is_one_atomic_round_trip(redis: RedisServer) -> None:
    config = redis_config(redis.url)
    second = RateLimiter(2, 1, config=config)
    hour = RateLimiter(100, HOUR, policy="sliding_window", config=config)
    store = second.store
    assert store is not None
    before = int(store.stats()["round_trips"])
    results = _flux.hit_many([(second, "ip", 1), (hour, "ip", 1)])
    assert store.stats()["round_trips"] == before + 1
    assert [r.allowed for r in results] == [True, True]
    assert [r.remaining for r in results] == [1, 99]
    assert {r.source for r in results} == {"redis"}
    RateLimiter.hit_many([(second, "ip", 1), (hour, "ip", 1)])
    denied = RateLimiter.hit_many([(second, "ip", 1), (hour, "ip", 1)])
    # The per-second limit denies, so the hourly budget is not spent on the denied hit.
    assert [r.allowed for r in denied] == [False, True]
    assert hour.peek("ip").remaining == 98
    with pytest.raises(ValueError, match="one store"):
        _flux.hit_many([(second, "ip", 1), (RateLimiter(1, 1, config=FluxConfig()), "ip", 1)])
    with pytest.raises(ValueError, match="at least one"):
        _flux.hit_many([])


def test_results_carry_their_source(redis: RedisServer) -> None:
    assert RateLimitResult(True).source == "memory"
    assert RateLimitResult(True, source="fail_open").fail_open
    assert "fail_open=True" in repr(RateLimitResult(True, source="fail_open"))
    assert RateLimitResult(True) != RateLimitResult(True, source="fail_open")
    with pytest.raises(ValueError, match="source"):
        RateLimitResult(True, source="disk")
    lim = RateLimiter(1, HOUR, config=redis_config(redis.url))
    lim.hit("k")
    lim.hit("k")  # denied by Redis: remembered by the deny cache
    assert lim.hit("k").source == "deny_cache"


def test_a_forked_child_gets_its_own_connections(redis: RedisServer) -> None:
    lim = RateLimiter(10, HOUR, config=redis_config(redis.url))
    lim.hit("parent")
    read, write = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about forking a process with threads (the pool's); that is the
        # case under test.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            result = lim.hit("parent")
            os.write(write, f"{result.remaining} {result.source}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        reply = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert reply == "8 redis"
    assert lim.hit("parent").remaining == 7
