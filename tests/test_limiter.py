"""RateLimiter: the Python face of one limit on the embedded store."""

from __future__ import annotations

import threading

import pytest

from flux import (
    ConfigError,
    FluxConfig,
    ManualClock,
    RateLimiter,
    RateLimitExceeded,
    RateLimitResult,
    create_limiter,
    load_config,
)
from flux._flux import ALGORITHMS

HOUR = 3600.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_000.0)


def limiter(*args: object, **kwargs: object) -> RateLimiter:
    kwargs.setdefault("config", FluxConfig())
    return RateLimiter(*args, **kwargs)  # type: ignore[arg-type]


def test_gcra_three_per_minute_fourth_waits_exactly_twenty_seconds(clock: ManualClock) -> None:
    lim = limiter(3, 60, clock=clock)
    results = [lim.hit("a") for _ in range(4)]
    assert [r.allowed for r in results] == [True, True, True, False]
    assert [r.remaining for r in results] == [2, 1, 0, 0]
    assert results[3].retry_after == pytest.approx(20.0, abs=1e-9)
    clock.advance(20.0 - 1e-6)
    assert not lim.hit("a").allowed
    clock.advance(1e-6)
    assert lim.hit("a").allowed


@pytest.mark.parametrize("policy", ALGORITHMS)
def test_sixteen_threads_one_key_exactly_the_quota(policy: str) -> None:
    lim = limiter(100, HOUR, policy=policy)
    allowed = []

    def worker() -> None:
        allowed.append(sum(lim.hit("shared").allowed for _ in range(1000)))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 100


def test_result_fields_headers_and_truthiness(clock: ManualClock) -> None:
    lim = limiter(2, 10, clock=clock)
    ok = lim.hit("k")
    assert ok and ok.allowed and ok.limit == 2 and ok.remaining == 1 and ok.usage == 1
    assert ok.retry_after == 0.0
    lim.hit("k")
    denied = lim.hit("k")
    assert not denied
    assert denied.to_headers() == {
        "X-RateLimit-Limit": "2",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "10",
        "Retry-After": "5",
    }
    assert "allowed=False" in repr(denied)
    assert RateLimitResult(True, 3, 1.0, None, 5).retry_after == 0.0


def test_peek_counts_nothing_and_reset_restores(clock: ManualClock) -> None:
    lim = limiter(2, 10, clock=clock)
    assert lim.peek("k").remaining == 2
    assert lim.peek("k").remaining == 2
    lim.hit("k", cost=2)
    assert not lim.peek("k").allowed
    lim.reset("k")
    assert lim.peek("k").remaining == 2


def test_is_allowed_and_require(clock: ManualClock) -> None:
    lim = limiter(1, 10, clock=clock)
    assert lim.is_allowed("k")
    assert not lim.is_allowed("k")
    with pytest.raises(RateLimitExceeded) as caught:
        lim.require("k")
    assert caught.value.key == "k"
    assert caught.value.retry_after == pytest.approx(10.0)
    assert caught.value.to_headers()["Retry-After"] == "10"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"requests": 0, "period": 1}, "requests must be at least 1"),
        ({"requests": -5, "period": 1}, "requests must be at least 1"),
        ({"requests": 1, "period": 0}, "period"),
        ({"requests": 1, "period": -1}, "period"),
        ({"requests": 1, "period": float("nan")}, "period"),
        ({"requests": 1, "period": 1, "burst": 0}, "burst"),
        ({"requests": 1, "period": 1, "policy": "moving_window"}, "moving_window"),
    ],
)
def test_bad_quotas_are_value_errors_naming_the_field(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        limiter(**kwargs)


def test_wrong_types_are_type_errors() -> None:
    with pytest.raises(TypeError, match="requests"):
        limiter(2.5, 10)
    with pytest.raises(TypeError, match="requests"):
        limiter(True, 10)
    with pytest.raises(TypeError):
        limiter(2, 10).hit(123)  # type: ignore[arg-type]


def test_cost_outside_capacity_is_an_error_not_a_denial(clock: ManualClock) -> None:
    lim = limiter(5, 10, clock=clock)
    with pytest.raises(ValueError, match="cost 6"):
        lim.hit("k", cost=6)
    with pytest.raises(ValueError, match="cost 0"):
        lim.hit("k", cost=0)
    with pytest.raises(ValueError, match="cost -1"):
        lim.hit("k", cost=-1)
    assert lim.hit("k", cost=5).allowed


def test_defaults_come_from_config_and_presets(tmp_path) -> None:
    path = tmp_path / "flux.toml"
    path.write_text(
        "[rate_limit]\nrequests = 7\nperiod = 30\n\n"
        '[rate_limits.api]\nrequests = 10\nperiod = 1\nburst = 20\npolicy = "token_bucket"\n'
    )
    config = load_config(path)
    default = RateLimiter(config=config)
    assert (default.requests, default.period, default.burst, default.policy) == (7, 30, 7, "gcra")
    api = RateLimiter.from_config("api", config=config)
    assert (api.requests, api.burst, api.policy) == (10, 20, "token_bucket")
    assert api.prefix == "flux:api:"
    assert "name='api'" in repr(api)
    override = create_limiter("api", requests=50, config=config)
    assert (override.requests, override.burst, override.period) == (50, 50, 1)
    with pytest.raises(ConfigError, match="nope"):
        RateLimiter.from_config("nope", config=config)


def test_max_keys_bounds_the_store() -> None:
    lim = limiter(1, HOUR, max_keys=100)
    for i in range(10_000):
        lim.hit(f"key-{i}")
    assert len(lim) <= 100


def test_idle_keys_are_swept(clock: ManualClock) -> None:
    lim = limiter(10, 1, clock=clock)
    for i in range(100):
        lim.hit(f"k{i}")
    assert len(lim) == 100
    clock.advance(1.0)
    assert lim.sweep() == 100
    assert len(lim) == 0


def test_manual_clock_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="seconds"):
        ManualClock(0).advance(-1)
    with pytest.raises(ValueError, match="seconds"):
        ManualClock(float("inf"))


def test_hit_many_is_all_or_nothing(clock: ManualClock) -> None:
    from flux._flux import hit_many

    per_second = limiter(2, 1, clock=clock)
    per_hour = limiter(1000, HOUR, clock=clock)
    outcomes = [hit_many([(per_second, "k", 1), (per_hour, "k", 1)]) for _ in range(5)]
    assert [all(r.allowed for r in o) for o in outcomes] == [True, True, False, False, False]
    assert per_hour.peek("k").remaining == 998
    with pytest.raises(ValueError, match="cost 3"):
        hit_many([(per_second, "k", 1), (limiter(2, 1), "k", 3)])
