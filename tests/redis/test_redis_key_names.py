"""Every limit has keys of its own on Redis: unnamed limits are named by their quota, and a
name given in code names a limit whose quota is given in code (week-one fault: an unnamed
login limit of 3 per minute used to exhaust an unnamed API limit of 1000 per minute)."""

from __future__ import annotations

import pytest
from fluxredis import redis_config
from redis_server import RedisServer

from flux import ConfigError, RateLimiter


def test_unnamed_limiters_of_different_quotas_stay_independent(redis: RedisServer) -> None:
    config = redis_config(redis.url)
    login = RateLimiter(3, 60, config=config)
    api = RateLimiter(1000, 60, config=config)
    assert [login.hit("203.0.113.9").allowed for _ in range(4)] == [True] * 3 + [False]
    assert sum(api.hit("203.0.113.9").allowed for _ in range(100)) == 100
    assert sorted(redis.command("KEYS", "*")) == [
        "flux:1000/60s:{203.0.113.9}:gcra",
        "flux:3/60s:{203.0.113.9}:gcra",
    ]


def test_unnamed_limiters_of_one_quota_share_state_across_processes(redis: RedisServer) -> None:
    # Two processes (two stores) declaring the same unnamed limit see one limit, as before.
    first = RateLimiter(2, 60, config=redis_config(redis.url))
    second = RateLimiter(2, 60, config=redis_config(redis.url, pool_size=2))
    assert first.hit("k").allowed and second.hit("k").allowed
    assert not first.hit("k").allowed


def test_burst_and_algorithm_are_part_of_an_unnamed_limit(redis: RedisServer) -> None:
    config = redis_config(redis.url)
    RateLimiter(3, 60, burst=10, config=config).hit("k")
    RateLimiter(3, 60, policy="token_bucket", config=config).hit("k")
    assert sorted(redis.command("KEYS", "*")) == [
        "flux:3/60s:{k}:token_bucket",
        "flux:3/60s;burst=10:{k}:gcra",
    ]


def test_two_unnamed_limits_on_one_key_in_one_atomic_hit(redis: RedisServer) -> None:
    config = redis_config(redis.url)
    minute, hour = RateLimiter(3, 60, config=config), RateLimiter(1000, 3600, config=config)
    results = RateLimiter.hit_many([(minute, "k", 1), (hour, "k", 1)])
    assert [r.remaining for r in results] == [2, 999]


def test_a_name_given_in_code_names_a_limit_without_a_preset(redis: RedisServer) -> None:
    config = redis_config(redis.url)
    login = RateLimiter(3, 60, name="login", config=config)
    assert (login.name, login.requests, login.prefix) == ("login", 3, "flux:login:")
    login.hit("10.0.0.7")
    assert redis.command("KEYS", "*") == ["flux:login:{10.0.0.7}:gcra"]
    # Without a quota, a name must still be a preset: a typo is not a silent default limit.
    with pytest.raises(ConfigError, match='unknown rate limit "logn"'):
        RateLimiter(name="logn", config=config)
    for bad in ("", "a{b}", "tab\there"):
        with pytest.raises(ValueError, match="limit name"):
            RateLimiter(3, 60, name=bad, config=config)
