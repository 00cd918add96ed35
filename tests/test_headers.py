"""flux.headers: every header value against the decision it reports, for every algorithm."""

from __future__ import annotations

import math
import random

import pytest

from flux import FluxConfig, ManualClock, RateLimiter, RateLimitResult
from flux._flux import ALGORITHMS
from flux.headers import (
    RATELIMIT,
    RATELIMIT_POLICY,
    RETRY_AFTER,
    X_RATELIMIT_LIMIT,
    X_RATELIMIT_REMAINING,
    X_RATELIMIT_RESET,
    AppliedLimit,
    build_headers,
    retry_after_seconds,
)


def up(seconds: float) -> int:
    """Rounded up, as a client must read it (never earlier than the truth)."""
    return math.ceil(seconds - 1e-9)


def expected(name: str, window: float, result: RateLimitResult) -> dict[str, str]:
    headers = {
        X_RATELIMIT_LIMIT: str(result.limit),
        X_RATELIMIT_REMAINING: str(result.remaining),
        X_RATELIMIT_RESET: str(up(result.reset_after)),
        RATELIMIT_POLICY: f'"{name}";q={result.limit};w={max(1, up(window))}',
        RATELIMIT: f'"{name}";r={result.remaining};t={up(result.reset_after)}',
    }
    if not result.allowed:
        headers[RETRY_AFTER] = str(max(1, up(result.retry_after)))
    return headers


@pytest.mark.parametrize("policy", ALGORITHMS)
@pytest.mark.parametrize(("requests", "period", "burst"), [(3, 60, None), (10, 1, 4), (5, 0.5, 5)])
def test_headers_match_every_decision(
    policy: str, requests: int, period: float, burst: int | None
) -> None:
    clock = ManualClock(1_700_000_000.0)
    limiter = RateLimiter(
        requests, period, burst=burst, policy=policy, config=FluxConfig(), clock=clock
    )
    steps = random.Random(f"{policy}{requests}")
    seen = set()
    for _ in range(60):
        result = limiter.hit("k")
        seen.add(result.allowed)
        headers = build_headers([AppliedLimit("api", period, result)])
        assert headers == expected("api", period, result)
        # The native rendering (used on every allowed request) says exactly the same.
        native = dict(result.header_items('"api"', max(1, up(period))))
        assert native == {k: v for k, v in headers.items() if k != RETRY_AFTER}
        raw = result.header_items('"api"', max(1, up(period)), raw=True)
        assert raw == [(k.lower().encode(), v.encode()) for k, v in native.items()]
        if not result.allowed:
            # Obeying Retry-After is never too early: the hit passes at exactly that time.
            assert int(headers[RETRY_AFTER]) >= result.retry_after
        clock.advance(steps.choice([0.0, 0.0, period / requests / 3, period / 2]))
    assert seen == {True, False}


def test_native_rendering_rejects_a_name_that_could_inject_a_header() -> None:
    result = RateLimitResult(True, 1, 1.0, 0.0, 2)
    with pytest.raises(ValueError, match="printable ASCII"):
        result.header_items('"a"\r\nSet-Cookie: x', 1)
    with pytest.raises(OverflowError):
        result.header_items('"a"', -1)


def test_retry_after_rounds_up_and_is_at_least_one() -> None:
    assert retry_after_seconds(0.0) == 1
    assert retry_after_seconds(0.4) == 1
    assert retry_after_seconds(1.9) == 2
    assert retry_after_seconds(20.0) == 20
    assert retry_after_seconds(20.000000001) == 20  # float noise is not a whole extra second


def test_jitter_stays_between_the_real_wait_and_the_wait_plus_jitter() -> None:
    rng = random.Random(7)
    values = [retry_after_seconds(3599.75, jitter_max_ms=500, rng=rng) for _ in range(200)]
    assert set(values) == {3600, 3601}
    # Any jitter above zero pushes a whole-second wait to the next second, or the one after.
    spread = {retry_after_seconds(10.0, jitter_max_ms=2000, rng=rng) for _ in range(200)}
    assert spread == {11, 12}
    assert {retry_after_seconds(10.0, jitter_max_ms=0, rng=rng) for _ in range(20)} == {10}


def test_jitter_goes_into_retry_after_only() -> None:
    denied = RateLimitResult(False, 0, 60.0, 20.0, 3)
    applied = [AppliedLimit("api", 60, denied)]
    headers = build_headers(applied, jitter_max_ms=900, rng=random.Random(1))
    assert headers[RETRY_AFTER] == "21"
    assert headers[X_RATELIMIT_RESET] == "60"
    assert build_headers([AppliedLimit("api", 60, RateLimitResult(True, 2, 20.0, 0.0, 3))])


def test_allowed_responses_have_no_retry_after() -> None:
    headers = build_headers([AppliedLimit("api", 60, RateLimitResult(True, 2, 20.0, 0.0, 3))])
    assert RETRY_AFTER not in headers
    assert headers[RATELIMIT] == '"api";r=2;t=20'


def test_several_limits_the_binding_one_drives_the_x_headers() -> None:
    per_second = AppliedLimit("second", 1, RateLimitResult(False, 0, 1.0, 0.5, 10))
    per_hour = AppliedLimit("hour", 3600, RateLimitResult(False, 0, 3600.0, 1800.0, 100))
    per_day = AppliedLimit("day", 86400, RateLimitResult(True, 500, 100.0, 0.0, 1000))
    headers = build_headers([per_second, per_hour, per_day])
    assert headers[X_RATELIMIT_LIMIT] == "100"
    assert headers[RETRY_AFTER] == "1800"
    assert (
        headers[RATELIMIT_POLICY] == '"second";q=10;w=1, "hour";q=100;w=3600, "day";q=1000;w=86400'
    )
    assert headers[RATELIMIT] == '"second";r=0;t=1, "hour";r=0;t=3600, "day";r=500;t=100'
    allowed = build_headers(
        [
            AppliedLimit("a", 60, RateLimitResult(True, 7, 5.0, 0.0, 10)),
            AppliedLimit("b", 60, RateLimitResult(True, 2, 9.0, 0.0, 3)),
        ]
    )
    assert (allowed[X_RATELIMIT_LIMIT], allowed[X_RATELIMIT_REMAINING]) == ("3", "2")


def test_names_are_valid_structured_field_strings() -> None:
    result = RateLimitResult(True, 1, 1.0, 0.0, 2)
    headers = build_headers([AppliedLimit('we"ird\\näme', 1, result)])
    # Non-ASCII is percent-encoded (UTF-8), never a lossy '?'.
    assert headers[RATELIMIT].startswith('"we\\"ird\\\\n%C3%A4me";')
    assert build_headers([]) == {}
