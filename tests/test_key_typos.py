"""A typo in ``key`` is not one bucket for everybody.

Week-one fault: ``key="IP"`` or ``key="usr"`` silently meant a constant key, so one client
exhausted the limit for every client; a key callable returning ``""`` did the same.
"""

from __future__ import annotations

import flask
import pytest

from flux import FluxConfig, rate_limit
from flux.identity import Identifier


@pytest.mark.parametrize(
    ("given", "meant"),
    [("IP", "ip"), (" ip ", "ip"), ("User", "user"), ("HEADER:X-Key", "header:X-Key")],
)
def test_known_kinds_are_matched_whatever_their_case(given: str, meant: str) -> None:
    assert Identifier(given, config=FluxConfig()).spec == meant


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [("usr", "user"), ("uesr", "user"), ("ips", "ip"), ("headr:X-Key", "header")],
)
def test_a_constant_that_looks_like_a_misspelt_kind_fails_at_decoration(
    typo: str, suggestion: str
) -> None:
    with pytest.raises(ValueError, match=f"misspelt '{suggestion}") as raised:
        rate_limit(requests=5, period=60, key=typo, config=FluxConfig())
    assert "lambda request" in str(raised.value)  # how to mean a constant on purpose
    with pytest.raises(ValueError, match="must not be empty"):
        rate_limit(requests=5, period=60, key="", config=FluxConfig())


def test_deliberate_constants_still_work() -> None:
    for constant in ("everyone", "global", "burst"):
        assert Identifier(constant, config=FluxConfig()).spec == constant


@pytest.mark.parametrize("empty", ["", None])
def test_an_empty_identity_falls_back_to_the_client_address(empty: str | None) -> None:
    app = flask.Flask(__name__)

    @app.get("/")
    @rate_limit(requests=2, period=60, key=lambda request: empty, config=FluxConfig())
    def index() -> str:
        return "ok"

    client = app.test_client()

    def get(ip: str) -> int:
        return client.get("/", environ_base={"REMOTE_ADDR": ip}).status_code

    assert [get("192.0.2.1") for _ in range(3)] == [200, 200, 429]
    # Another client has its own bucket: the empty identity was not one shared constant.
    assert get("192.0.2.2") == 200
