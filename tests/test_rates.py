"""Rate strings: what they read as, where they are accepted, and how bad ones are refused."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from flux import ConfigError, RateLimiter, RateLimitExceeded, load_config, rate_limit
from flux.decorators import limits_of
from flux.rates import Rate, is_rate_string, parse_rates


@pytest.mark.parametrize(
    ("text", "rates"),
    [
        ("100/minute", [(100, 60)]),
        ("100 per minute", [(100, 60)]),
        ("100 PER Minutes", [(100, 60)]),
        ("5/2 seconds", [(5, 2)]),
        ("1/0.5s", [(1, 0.5)]),
        ("10/second; 1000/day", [(10, 1), (1000, 86400)]),
        ("10/s, 50/h;", [(10, 1), (50, 3600)]),
        ("3/hr", [(3, 3600)]),
    ],
)
def test_rate_strings_read_as_requests_per_period(
    text: str, rates: list[tuple[int, float]]
) -> None:
    assert parse_rates(text) == tuple(Rate(r, p) for r, p in rates)
    assert is_rate_string(text)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "an empty rate"),
        ("10", "cannot read '10'"),
        ("10/fortnight", "unknown unit 'fortnight'"),
        ("0/minute", "at least 1"),
        ("5/0 seconds", "longer than 0"),
        ("5/min; 5/min", "given twice"),
        ("ten/minute", "cannot read"),
    ],
)
def test_bad_rate_strings_are_quoted_and_explained(text: str, says: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_rates(text)
    assert repr(text) in str(error.value) and says in str(error.value)


def test_preset_names_are_not_rate_strings() -> None:
    assert not is_rate_string("api_tier_1")


def test_decorator_takes_a_rate_string_as_name_or_limit() -> None:
    @rate_limit("2/hour; 3/day")
    def work() -> str:
        return "ok"

    assert [limit.limiter.requests for limit in limits_of(work)[0].limits] == [2, 3]
    assert [work(), work()] == ["ok", "ok"]
    with pytest.raises(RateLimitExceeded):
        work()

    with pytest.raises(ValueError, match="'5/fortnight'"):
        rate_limit(limit="5/fortnight")
    with pytest.raises(TypeError, match="given twice"):
        rate_limit("5/minute", limit="6/minute")


def test_flux_toml_limit_strings(tmp_path: Path) -> None:
    path = tmp_path / "flux.toml"
    path.write_text('[rate_limits.search]\nlimit = "10/second; 1000/day"\n', encoding="utf-8")
    config = load_config(path)
    assert config.rate_limits["search"].rates == (Rate(10, 1), Rate(1000, 86400))
    declared = rate_limit("search", config=config)
    assert [limit.name for limit in declared.limits] == ["search", "search[1000/86400s]"]
    path.write_text('[rate_limit]\nlimit = "10/fortnight"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"rate_limit\.limit"):
        load_config(path)


def test_parse_and_parse_all() -> None:
    assert RateLimiter.parse("100/minute").requests == 100
    with pytest.raises(ValueError, match="parse_all"):
        RateLimiter.parse("1/s; 2/d")
    second, day = RateLimiter.parse_all("2/second; 5/day", name="pace")
    assert (second.name, day.name) == ("pace", "pace[5/86400s]")


def test_a_limit_callable_that_names_nothing_is_logged_and_fails_open(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @rate_limit(limit=lambda: "no-such-preset")
    def work() -> str:
        return "ok"

    with caplog.at_level(logging.ERROR, logger="flux"):
        assert work() == "ok"  # the default policy fails open: passed, uncounted, logged
    assert "returned 'no-such-preset'" in caplog.text
