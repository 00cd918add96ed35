"""Limit names outside printable ASCII reach the IETF headers intact: percent-encoded UTF-8
inside the RFC 8941 sf-string, never ``?``.

Week-one fault: a limit named ``café`` rendered as ``"caf?"`` in ``RateLimit-Policy``, so two
such names could not be told apart.
"""

from __future__ import annotations

from urllib.parse import unquote

import flask

from flux import FluxConfig, rate_limit
from flux.headers import sf_string


def test_non_ascii_and_percent_are_percent_encoded() -> None:
    assert sf_string("café") == '"caf%C3%A9"'
    assert sf_string("日本") == '"%E6%97%A5%E6%9C%AC"'
    assert sf_string("50%") == '"50%25"'
    assert sf_string("tab\there") == '"tab%09here"'
    assert sf_string('say "hi"') == r'"say \"hi\""'
    assert unquote(sf_string("café")[1:-1]) == "café"


def test_a_non_ascii_limit_name_in_the_response_headers() -> None:
    app = flask.Flask(__name__)

    @app.get("/")
    @rate_limit("café", requests=2, period=60, config=FluxConfig())
    def index() -> str:
        return "ok"

    client = app.test_client()
    replies = [client.get("/") for _ in range(3)]
    assert replies[0].headers["RateLimit-Policy"] == '"caf%C3%A9";q=2;w=60'
    assert replies[2].status_code == 429
    assert replies[2].headers["RateLimit"].startswith('"caf%C3%A9";r=0;')
