"""rate_limit on plain functions: decoration-time work, stacking (all or nothing), testing tools."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import flux
from flux import (
    ConfigError,
    FluxConfig,
    ManualClock,
    RateLimitExceeded,
    load_config,
    rate_limit,
    reload_config,
)
from flux import _flux as native
from flux.config import LimitConfig
from flux.decorators import limits_of
from flux.identity import hash_identity
from flux.integrations import _declared
from flux.testing import assert_limited_after, manual_clock, reset

pytest_plugins = ["pytester"]

TOML = """
[rate_limit]
requests = 7
period = 70

[rate_limits.api]
requests = 3
period = 30
policy = "token_bucket"
"""


@pytest.fixture
def config(tmp_path: Path) -> FluxConfig:
    path = tmp_path / "flux.toml"
    path.write_text(TOML)
    return load_config(path)


@pytest.fixture
def clock() -> Iterator[ManualClock]:
    with manual_clock() as clock:
        yield clock


def test_plain_function_raises_after_the_quota(clock: ManualClock) -> None:
    @rate_limit(requests=2, period=10, config=FluxConfig())
    def work(x: int) -> int:
        return x * 2

    assert [work(1), work(2)] == [2, 4]
    with pytest.raises(RateLimitExceeded) as denied:
        work(3)
    error = denied.value
    assert (
        error.key == f"{__name__}.test_plain_function_raises_after_the_quota.<locals>.work:global"
    )
    assert error.retry_after == pytest.approx(5.0)
    assert error.to_headers() == {
        "Retry-After": "5",
        "X-RateLimit-Limit": "2",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "10",
    }
    clock.advance(5)
    assert work(4) == 8


def test_async_plain_function(clock: ManualClock) -> None:
    @rate_limit(requests=1, period=10, config=FluxConfig())
    async def work() -> str:
        return "done"

    async def run() -> None:
        assert await work() == "done"
        with pytest.raises(RateLimitExceeded):
            await work()

    asyncio.run(run())


def test_callable_key_on_a_plain_function_sees_its_arguments(clock: ManualClock) -> None:
    @rate_limit(requests=1, period=60, key=lambda user, text: user, config=FluxConfig())
    def send(user: str, text: str) -> str:
        return f"{user}: {text}"

    assert send("ann", "hi") == "ann: hi"
    assert send("bob", "hi") == "bob: hi"
    with pytest.raises(RateLimitExceeded, match="send:ann"):
        send("ann", "again")


def test_preset_overrides_and_unknown_names(config: FluxConfig) -> None:
    assert limits_of(rate_limit(config=config)(lambda: 0))[0].limiter.requests == 7
    api = rate_limit("api", config=config).limiter
    assert (api.requests, api.period, api.policy) == (3, 30, "token_bucket")
    tuned = rate_limit("api", requests=10, policy="gcra", config=config).limiter
    assert (tuned.requests, tuned.period, tuned.burst, tuned.policy) == (10, 30, 10, "gcra")
    # An unknown preset fails when the module is imported, not at the first request.
    with pytest.raises(ConfigError, match=r'unknown rate limit "nope".*known in .*: api'):
        rate_limit("nope", config=config)
    with pytest.raises(ConfigError, match="nope"):
        rate_limit("nope", requests=5, config=config)


def test_a_complete_limit_may_be_named_without_a_preset(config: FluxConfig) -> None:
    @rate_limit("login", requests=1, period=60, config=config)
    def login() -> str:
        return "in"

    assert login() == "in"
    with pytest.raises(RateLimitExceeded, match="'login:global'"):
        login()


def test_config_is_read_at_decoration_time(tmp_path: Path, monkeypatch: Any) -> None:
    path = tmp_path / "flux.toml"
    path.write_text(TOML)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FLUX_CONFIG", raising=False)
    try:
        reload_config()
        limit = rate_limit("api")
        assert limit.limiter.requests == 3
        path.write_text(TOML.replace("requests = 3", "requests = 300"))
        reload_config()
        assert limit.limiter.requests == 3  # already decorated: keeps its limit
        assert rate_limit("api", period=31).limiter.requests == 300
    finally:
        monkeypatch.chdir(Path(__file__).parent)
        reload_config()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"requests": 0, "period": 1}, ValueError),
        ({"requests": 1, "period": 0}, ValueError),
        ({"requests": 1, "period": 1, "cost": 0}, ValueError),
        ({"requests": 1, "period": 1, "methods": []}, ValueError),
        ({"requests": 1, "period": 1, "key": 12}, TypeError),
        ({"requests": 1, "period": 1, "policy": "fastest"}, ValueError),
    ],
)
def test_bad_arguments_fail_at_decoration(kwargs: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        rate_limit(config=FluxConfig(), **kwargs)


def test_decorating_a_class_is_refused() -> None:
    with pytest.raises(TypeError, match="method_decorator"):
        rate_limit(requests=1, period=1, config=FluxConfig())(type("View", (), {}))


def test_limiter_is_built_once_not_per_call(monkeypatch: Any, clock: ManualClock) -> None:
    built = []
    real = _declared.RateLimiter

    def counting(*args: Any, **kwargs: Any) -> Any:
        built.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(_declared, "RateLimiter", counting)
    limit = rate_limit(requests=100, period=60, config=FluxConfig())
    assert len(built) == 1

    def view(x: int) -> int:
        return x

    # django's method_decorator decorates a fresh partial on every call: still one limiter.
    for n in range(20):
        assert limit(functools.partial(view))(n) == n
    decorated = limit(view)
    for n in range(20):
        decorated(n)
    # Two: one built at declaration (checking the arguments), one named by its bucket.
    assert len(built) == 2
    # peek tells what remains now: every call counted against one bucket.
    assert limit.limiter.peek("global").remaining == 60


def test_bare_decorator_uses_the_default_limit() -> None:
    @rate_limit
    def work() -> int:
        return 1

    assert work() == 1
    assert limits_of(work)[0].limiter.requests == flux.get_config().rate_limit.requests


def test_stacked_decorators_collapse_and_are_all_or_nothing(clock: ManualClock) -> None:
    @rate_limit(requests=2, period=60, config=FluxConfig())
    @rate_limit(requests=3, period=3600, config=FluxConfig())
    def work() -> str:
        return "ok"

    minute, hour = limits_of(work)
    assert (minute.limiter.requests, hour.limiter.requests) == (2, 3)
    assert work.__wrapped__.__name__ == "work"  # one wrapper around the function
    assert work() == work() == "ok"
    for _ in range(5):
        with pytest.raises(RateLimitExceeded):
            work()
    name = f"{__name__}.{work.__qualname__}"
    # The hourly limit counted only the two calls that passed.
    assert hour.limiter.peek("global").remaining == 1
    clock.advance(60)
    assert work() == "ok"
    with pytest.raises(RateLimitExceeded) as denied:
        work()
    assert denied.value.key == f"{name}[3/3600s]:global"


def test_stacked_limits_make_one_native_call(monkeypatch: Any, clock: ManualClock) -> None:
    calls = []
    real = native.hit_many

    def spy(items: list[Any]) -> Any:
        calls.append([(limiter.requests, key, cost) for limiter, key, cost in items])
        return real(items)

    monkeypatch.setattr(native, "hit_many", spy)

    @rate_limit(requests=5, period=60, cost=2, config=FluxConfig())
    @rate_limit("burst", requests=50, period=3600, config=FluxConfig(), key="everyone")
    def work() -> None:
        return None

    work()
    # Each limiter is named by its bucket; the key handed to it is the identity alone.
    assert calls == [[(5, "global", 2), (50, "everyone", 1)]]
    name = f"{__name__}.{work.__qualname__}"
    assert [limit.limiter.name for limit in limits_of(work)] == [name, "burst"]


def test_stacked_limits_hold_under_threads(clock: ManualClock) -> None:
    config = FluxConfig()

    @rate_limit(requests=40, period=3600, config=config)
    @rate_limit(requests=1000, period=3600, config=config)
    def work() -> None:
        return None

    passed = []

    def client() -> None:
        count = 0
        for _ in range(50):
            try:
                work()
                count += 1
            except RateLimitExceeded:
                pass
        passed.append(count)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(passed) == 40
    assert limits_of(work)[1].limiter.peek("global").remaining == 960


def test_named_limits_are_one_bucket_wherever_used(config: FluxConfig) -> None:
    @rate_limit("api", config=config)
    def first() -> int:
        return 1

    @rate_limit("api", config=config)
    def second() -> int:
        return 2

    assert [first(), second(), first()] == [1, 2, 1]
    with pytest.raises(RateLimitExceeded, match="'api:global'"):
        second()


def test_cost(clock: ManualClock) -> None:
    @rate_limit(requests=5, period=60, cost=2, config=FluxConfig())
    def heavy() -> None:
        return None

    @rate_limit(requests=5, period=60, cost=lambda n: n, key="k", config=FluxConfig())
    def priced(n: int) -> int:
        return n

    assert_limited_after(heavy, 2)
    assert priced(4) == 4
    with pytest.raises(RateLimitExceeded):
        priced(2)
    assert priced(1) == 1


def test_hashed_identities(clock: ManualClock) -> None:
    base = FluxConfig()
    hashed = replace(base, flux=replace(base.flux, hash_keys=True))

    @rate_limit(requests=1, period=60, key="secret-user", config=hashed)
    def work() -> None:
        return None

    work()
    with pytest.raises(RateLimitExceeded) as denied:
        work()
    assert denied.value.key.endswith(":" + hash_identity("secret-user"))


def test_repr_names_the_limit() -> None:
    text = repr(rate_limit("api", config=FluxConfig(rate_limits={"api": LimitConfig(3, 30)})))
    assert text.startswith("rate_limit(RateLimiter(name='api', requests=3")


# --- flux.testing ----------------------------------------------------------------------------


def test_manual_clock_and_reset_reach_already_decorated_functions() -> None:
    @rate_limit(requests=1, period=3600, config=FluxConfig())
    def work() -> str:
        return "ok"

    with manual_clock() as clock:
        assert work() == "ok"
        assert isinstance(assert_limited_after(work, 0), RateLimitExceeded)
        clock.advance(3600)
        assert work() == "ok"
        reset()
        assert work() == "ok"
    # Leaving the block empties the limits again (on the real clock).
    assert work() == "ok"


def test_assert_limited_after_reports_both_ways() -> None:
    class Response:
        def __init__(self, status_code: int) -> None:
            self.status_code = status_code

    replies = iter([200, 200, 429])
    assert assert_limited_after(lambda: Response(next(replies)), 2).status_code == 429
    with pytest.raises(AssertionError, match="call 2 of 3 got 429 too early"):
        codes = iter([200, 429])
        assert_limited_after(lambda: Response(next(codes)), 3)
    with pytest.raises(AssertionError, match="call 2 was not limited"):
        assert_limited_after(lambda: Response(200), 1)


def test_pytest_plugin_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('pytest_plugins = ["flux.testing"]\n')
    pytester.makepyfile(
        """
        from flux import FluxConfig, RateLimitExceeded, rate_limit
        from flux.testing import assert_limited_after

        @rate_limit(requests=2, period=3600, config=FluxConfig())
        def work():
            return "ok"

        def test_one(flux_clock):
            assert_limited_after(work, 2)
            flux_clock.advance(1800)
            assert work() == "ok"

        def test_two_starts_empty(flux_reset):
            assert_limited_after(work, 2)
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_every_decision_reaches_analytics(clock: ManualClock) -> None:
    hooks = pytest.importorskip("flux.analytics.hooks")
    events: list[Any] = []
    allow, block = hooks.on_allow(events.append), hooks.on_block(events.append)
    try:

        @rate_limit(requests=1, period=60, config=FluxConfig())
        @rate_limit("tier", requests=5, period=60, key="k", config=FluxConfig())
        def work() -> None:
            return None

        work()
        with pytest.raises(RateLimitExceeded):
            work()
    finally:
        hooks.remove(allow)
        hooks.remove(block)
    name = f"{__name__}.{work.__qualname__}"
    seen = [(e.limit, e.endpoint, e.allowed, e.identity) for e in events]
    assert seen == [
        (name, name, True, "global"),
        ("tier", name, True, "k"),
        (name, name, False, "global"),
        ("tier", name, True, "k"),  # would have passed; not consumed (all or nothing)
    ]
