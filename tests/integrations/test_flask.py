"""Flask: its test client for behaviour, waitress for real concurrency and proxies."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import flask_app
import pytest
from contract import Client, Contract, MakeClient, PolicyContract, Reply, ServerContract
from flask import Flask
from flask.testing import FlaskClient
from fluxtest import free_port, python_tool, rate_headers, server

from flux import rate_limit
from flux.integrations.flask import FluxLimiter


class FlaskTestClient(Client):
    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def request(self, method: str, path: str, headers: Mapping[str, str] | None = None) -> Reply:
        response = self.client.open(path, method=method, headers=dict(headers or {}))
        return Reply(response.status_code, dict(response.headers), response.get_data())


@pytest.fixture
def make_client() -> MakeClient:
    def make(peer: str = "127.0.0.1", middleware: dict[str, Any] | None = None) -> Client:
        client = flask_app.create_app(middleware=middleware).test_client()
        client.environ_base["REMOTE_ADDR"] = peer
        return FlaskTestClient(client)

    return make


class TestFlask(Contract, PolicyContract):
    """The shared contract through Flask's test client."""


@pytest.fixture(scope="module")
def live() -> Iterator[str]:
    # waitress: one process (the embedded store lives in it), eight threads. Waitress 3 drops
    # X-Forwarded-For unless told otherwise: pass it through, flux's trusted_proxies decide.
    port = free_port()
    argv = [python_tool("waitress-serve"), "--host=127.0.0.1", f"--port={port}", "--threads=8"]
    argv += ["--no-clear-untrusted-proxy-headers", "flask_app:app"]
    with server(argv, port) as base:
        yield base


class TestFlaskUnderWaitress(ServerContract):
    """The server contract under waitress."""


def test_blueprint_view_is_limited() -> None:
    client = flask_app.create_app().test_client()
    replies = [client.get("/bp/limited") for _ in range(4)]
    assert [r.status_code for r in replies] == [200, 200, 200, 429]
    assert rate_headers(replies[0].headers)["RateLimit"] == '"bp_limited";r=2;t=1200'


def test_tuple_return_keeps_status_and_headers() -> None:
    client = flask_app.create_app().test_client()
    reply = client.get("/tuple")
    assert (reply.status_code, reply.get_data(as_text=True)) == (201, "created")
    assert reply.headers["X-Own"] == "kept"
    assert rate_headers(reply.headers)["X-RateLimit-Remaining"] == "2"


def test_url_parameters_reach_the_view() -> None:
    client = flask_app.create_app().test_client()
    assert client.get("/items/7").get_json() == {"id": 7}


def test_extension_with_an_application_factory() -> None:
    limiter = FluxLimiter(default={"requests": 1, "period": 60})
    app = Flask(__name__)

    @app.get("/")
    def index() -> Any:
        return "ok"

    limiter.init_app(app)
    client = app.test_client()
    assert [client.get("/").status_code for _ in range(2)] == [200, 429]


def test_decorator_outside_a_request_context_raises() -> None:
    from flux import RateLimitExceeded

    @rate_limit(requests=1, period=60)
    def task() -> str:
        return "done"

    assert task() == "done"
    with pytest.raises(RateLimitExceeded):
        task()
