"""Bad numbers are errors naming the value, never a crash or an HTTP 500.

Week-one fault: ``cost=-1`` and ``RateLimiter(2**63, 60)`` raised OverflowError, and a cost
callable returning 0, -1 or more than the capacity turned the request into an HTTP 500.
"""

from __future__ import annotations

import logging

import flask
import pytest

from flux import FluxConfig, RateLimiter, rate_limit
from flux.config import FluxSettings


def test_negative_and_huge_numbers_are_value_errors_naming_them() -> None:
    limiter = RateLimiter(5, 60, config=FluxConfig())
    with pytest.raises(ValueError, match="invalid cost -1"):
        limiter.hit("k", cost=-1)
    with pytest.raises(ValueError, match=r"items\[1\]: invalid cost -3"):
        RateLimiter.hit_many([(limiter, "k", 1), (limiter, "j", -3)])
    for requests in (2**63, 2**64, 2**80):
        with pytest.raises(ValueError, match=str(requests)):
            RateLimiter(requests, 60, config=FluxConfig())
    with pytest.raises(ValueError, match=str(2**70)):
        RateLimiter(5, 60, burst=2**70, config=FluxConfig())
    assert limiter.hit("k").allowed  # nothing was counted by the refused calls
    assert limiter.peek("k").remaining == 4


def test_a_static_cost_above_the_capacity_fails_at_decoration() -> None:
    with pytest.raises(ValueError, match="cost 6 is larger than the capacity 5"):
        rate_limit(requests=5, period=60, cost=6, config=FluxConfig())(lambda: 0)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="cost must be an int"):
            rate_limit(requests=5, period=60, cost=bad, config=FluxConfig())


@pytest.mark.parametrize("bad", [0, -1, 6, "3", None])
@pytest.mark.parametrize("fail_silently", [True, False])
def test_a_bad_dynamic_cost_is_logged_and_follows_the_fail_policy(
    bad: object, fail_silently: bool, caplog: pytest.LogCaptureFixture
) -> None:
    config = FluxConfig(flux=FluxSettings(fail_silently=fail_silently))
    app = flask.Flask(__name__)

    @app.get("/")
    @rate_limit(requests=5, period=60, cost=lambda request: bad, config=config)
    def index() -> str:
        return "ok"

    with caplog.at_level(logging.ERROR, logger="flux"):
        reply = app.test_client().get("/")
    assert reply.status_code == (200 if fail_silently else 503)
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(logged) == 1 and f"returned {bad!r}" in logged[0], logged
    assert "capacity, 5" in logged[0]
