"""Starlette: TestClient for behaviour, uvicorn (one worker) for real concurrency and proxies."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import starlette_app
from contract import (
    AsyncServerContract,
    Client,
    Contract,
    MakeClient,
    PolicyContract,
    Reply,
    ServerContract,
)
from fluxtest import free_port, rate_headers, server
from starlette.testclient import TestClient


class StarletteClient(Client):
    def __init__(self, client: TestClient) -> None:
        self.client = client

    def request(self, method: str, path: str, headers: Mapping[str, str] | None = None) -> Reply:
        response = self.client.request(method, path, headers=dict(headers or {}))
        return Reply(response.status_code, dict(response.headers), response.content)


@pytest.fixture
def make_client() -> MakeClient:
    def make(peer: str = "127.0.0.1", middleware: dict[str, Any] | None = None) -> Client:
        app = starlette_app.create_app(middleware=middleware)
        return StarletteClient(TestClient(app, client=(peer, 50000)))

    return make


class TestStarlette(Contract, PolicyContract):
    """The shared contract through Starlette's TestClient."""


@pytest.fixture(scope="module")
def live() -> Iterator[str]:
    # One worker: the embedded store lives in the process. --no-proxy-headers: uvicorn would
    # otherwise rewrite the client address itself from X-Forwarded-For sent by 127.0.0.1.
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "starlette_app:app", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--workers", "1", "--no-proxy-headers", "--log-level", "warning"]
    with server(argv, port) as base:
        yield base


class TestStarletteUnderUvicorn(ServerContract, AsyncServerContract):
    """The server contract under uvicorn."""


def test_class_based_endpoint_method_is_limited() -> None:
    client = TestClient(starlette_app.create_app())
    replies = [client.get("/endpoint") for _ in range(4)]
    assert [r.status_code for r in replies] == [200, 200, 200, 429]
    assert rate_headers(replies[0].headers)["RateLimit"] == '"Endpoint.get";r=2;t=1200'


def test_plain_text_response_gets_the_headers() -> None:
    client = TestClient(starlette_app.create_app())
    reply = client.get("/apikey", headers={"X-API-Key": "k"})
    assert reply.text == "plain text"
    assert rate_headers(reply.headers)["X-RateLimit-Remaining"] == "2"
