"""flux.exceptions: hierarchy, flux-limiter compatible signatures, headers, kept causes."""

from __future__ import annotations

import builtins
from pathlib import Path
from types import SimpleNamespace

import pytest

from flux.exceptions import ConfigError, ConnectionError, FluxError, RateLimitExceeded


def test_hierarchy() -> None:
    for cls in (RateLimitExceeded, ConfigError, ConnectionError):
        assert issubclass(cls, FluxError)
    assert issubclass(FluxError, Exception)
    assert issubclass(ConfigError, ValueError)
    # flux's ConnectionError is also the builtin one, so generic handlers catch it.
    assert issubclass(ConnectionError, builtins.ConnectionError)
    assert ConnectionError is not builtins.ConnectionError


def test_rate_limit_exceeded_flux_limiter_signature() -> None:
    error = RateLimitExceeded("user:1", 2.25)
    assert error.key == "user:1"
    assert error.retry_after == 2.25
    assert str(error) == "Rate limit exceeded for 'user:1'. Retry after 2.2s"
    assert str(RateLimitExceeded("k")) == "Rate limit exceeded for 'k'"
    assert str(RateLimitExceeded("k", 1, "custom")) == "custom"
    assert RateLimitExceeded(key="k", retry_after=3, message="m").retry_after == 3.0
    assert (error.limit, error.remaining, error.reset_after, error.result) == (
        None,
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [
        (0, "0"),
        (0.001, "1"),
        (0.4, "1"),
        (1.0, "1"),
        (1.01, "2"),
        (59.999, "60"),
        (3600, "3600"),
    ],
)
def test_retry_after_rounds_up(retry_after: float, header: str) -> None:
    error = RateLimitExceeded("k", retry_after)
    assert error.to_headers()["Retry-After"] == header
    assert error.retry_after_seconds == int(header)


def test_headers_without_a_result() -> None:
    assert RateLimitExceeded("k", 1.5).to_headers() == {
        "Retry-After": "2",
        "X-RateLimit-Remaining": "0",
    }


def test_headers_from_a_result() -> None:
    result = SimpleNamespace(
        allowed=False, limit=10, remaining=0, reset_after=12.2, retry_after=0.7
    )
    error = RateLimitExceeded("k", result=result)
    assert error.result is result
    assert error.retry_after == 0.7
    assert (error.limit, error.remaining, error.reset_after) == (10, 0, 12.2)
    assert error.to_headers() == {
        "Retry-After": "1",
        "X-RateLimit-Limit": "10",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "13",
    }


def test_explicit_values_win_over_the_result() -> None:
    result = SimpleNamespace(limit=10, remaining=3, reset_after=5.0, retry_after=2.0)
    error = RateLimitExceeded("k", 4.0, result=result, limit=20, remaining=-1, reset_after=1.0)
    assert (error.retry_after, error.limit, error.remaining, error.reset_after) == (
        4.0,
        20,
        -1,
        1.0,
    )
    headers = error.to_headers()
    assert headers["X-RateLimit-Remaining"] == "0"  # never negative
    assert headers["X-RateLimit-Limit"] == "20"
    assert headers["X-RateLimit-Reset"] == "1"


def test_result_missing_fields_is_tolerated() -> None:
    error = RateLimitExceeded("k", result=SimpleNamespace(retry_after=None))
    assert error.retry_after == 0.0
    assert error.to_headers() == {"Retry-After": "0", "X-RateLimit-Remaining": "0"}


def test_config_error_message_and_attributes() -> None:
    error = ConfigError("expected an integer", path="/etc/flux.toml", key="redis.port")
    assert str(error) == "/etc/flux.toml: redis.port: expected an integer"
    assert error.path == Path("/etc/flux.toml")
    assert error.key == "redis.port"
    assert error.reason == "expected an integer"
    assert str(ConfigError("bad", key="FLUX_REDIS_URL")) == "FLUX_REDIS_URL: bad"
    assert str(ConfigError("bad", path=Path("f.toml"))) == "f.toml: bad"
    plain = ConfigError("bad")
    assert (str(plain), plain.path, plain.key) == ("bad", None, None)
    with pytest.raises(ValueError):
        raise plain


def test_connection_error_keeps_the_original() -> None:
    original = OSError(111, "Connection refused")
    error = ConnectionError("Redis at 127.0.0.1:6379 unreachable", original)
    assert error.original is original
    assert error.__cause__ is original
    assert str(error) == "Redis at 127.0.0.1:6379 unreachable"
    with pytest.raises(builtins.ConnectionError):
        raise error
    with pytest.raises(FluxError):
        raise ConnectionError("x", original=original)


def test_connection_error_without_original() -> None:
    error = ConnectionError("Rate limit check failed: timeout")
    assert error.original is None and error.__cause__ is None
    assert error.args == ("Rate limit check failed: timeout",)
    assert str(error) == "Rate limit check failed: timeout"


def test_raise_from_sets_cause_too() -> None:
    original = TimeoutError("slow")
    with pytest.raises(ConnectionError) as info:
        try:
            raise original
        except TimeoutError as exc:
            raise ConnectionError("Redis timed out", exc) from exc
    assert info.value.__cause__ is original and info.value.original is original
