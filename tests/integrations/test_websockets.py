"""Websocket connection attempts, limited by the decorator and by the ASGI middleware.

In process through Starlette's TestClient (which supports the denial response extension; a
wrapper hides it to show the close-1008 fallback), and under a real uvicorn server with a
real websocket client, whose denied handshake gets an HTTP 429.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import websocket_app
from fluxtest import assert_denied_body, free_port, rate_headers, server
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect
from websocket_app import GREETING, WS_QUOTA

MIDDLEWARE_QUOTA = 3
MIDDLEWARE = {"default": {"requests": MIDDLEWARE_QUOTA, "period": 3600}, "exempt_paths": ["/ping"]}

Factory = Callable[..., Any]
FACTORIES = {"fastapi": websocket_app.create_fastapi, "starlette": websocket_app.create_starlette}


@pytest.fixture(params=sorted(FACTORIES))
def make_app(request: pytest.FixtureRequest) -> Factory:
    return FACTORIES[request.param]


def connects(client: TestClient, path: str, headers: dict[str, str] | None = None) -> bool:
    """Whether a connection to ``path`` is accepted (and then works: greeting, echo)."""
    try:
        with client.websocket_connect(path, headers=dict(headers or {})) as socket:
            assert socket.receive_text() == GREETING
            socket.send_text("ping")
            assert socket.receive_text() == "ping"
            return True
    except WebSocketDenialResponse as denial:
        assert denial.status_code == 429, denial.content
        return False


def denial_of(client: TestClient, path: str) -> WebSocketDenialResponse:
    with pytest.raises(WebSocketDenialResponse) as caught, client.websocket_connect(path):
        pass
    return caught.value


# --- the decorator ---------------------------------------------------------------------------


def test_decorator_allows_the_quota_then_answers_429(make_app: Factory) -> None:
    client = TestClient(make_app())
    assert [connects(client, "/ws") for _ in range(WS_QUOTA)] == [True] * WS_QUOTA
    denial = denial_of(client, "/ws")
    assert denial.status_code == 429
    headers = rate_headers(denial.headers)
    assert headers["X-RateLimit-Limit"] == str(WS_QUOTA)
    assert headers["X-RateLimit-Remaining"] == "0"
    assert int(headers["Retry-After"]) >= 1
    assert headers["RateLimit-Policy"].endswith(f";q={WS_QUOTA};w=3600")
    assert_denied_body(json.loads(denial.content), denial.headers)


def test_decorator_closes_1008_without_the_denial_extension(make_app: Factory) -> None:
    client = TestClient(make_app(denial=False))
    for _ in range(WS_QUOTA):
        assert connects(client, "/ws")
    with pytest.raises(WebSocketDisconnect) as caught, client.websocket_connect("/ws"):
        pass
    assert caught.value.code == 1008
    assert caught.value.reason.startswith("rate limited; retry after ")
    assert caught.value.reason.endswith(" s")


def test_each_client_address_has_its_own_connections(make_app: Factory) -> None:
    app = make_app()
    first = TestClient(app, client=("10.0.0.1", 50000))
    second = TestClient(app, client=("10.0.0.2", 50000))
    assert [connects(first, "/ws") for _ in range(WS_QUOTA + 1)] == [True] * WS_QUOTA + [False]
    assert connects(second, "/ws")


def test_key_user_reads_scope_user(make_app: Factory) -> None:
    client = TestClient(make_app())
    alice = {"X-User": "alice"}
    results = [connects(client, "/ws-user", alice) for _ in range(WS_QUOTA + 1)]
    assert results == [True] * WS_QUOTA + [False]
    assert connects(client, "/ws-user", {"X-User": "bob"})


def test_undecorated_websocket_is_not_limited(make_app: Factory) -> None:
    client = TestClient(make_app())
    assert all(connects(client, "/ws-open") for _ in range(WS_QUOTA + 3))


# --- the middleware --------------------------------------------------------------------------


def test_middleware_limits_connection_attempts(make_app: Factory) -> None:
    client = TestClient(make_app(middleware=MIDDLEWARE))
    results = [connects(client, "/ws-open") for _ in range(MIDDLEWARE_QUOTA + 1)]
    assert results == [True] * MIDDLEWARE_QUOTA + [False]
    denial = denial_of(client, "/ws-open")
    headers = rate_headers(denial.headers)
    assert headers["X-RateLimit-Limit"] == str(MIDDLEWARE_QUOTA)
    assert int(headers["Retry-After"]) >= 1
    assert_denied_body(json.loads(denial.content), denial.headers)
    assert client.get("/ping").status_code == 200  # exempt


def test_middleware_closes_1008_without_the_denial_extension(make_app: Factory) -> None:
    client = TestClient(make_app(middleware=MIDDLEWARE, denial=False))
    for _ in range(MIDDLEWARE_QUOTA):
        assert connects(client, "/ws-open")
    with pytest.raises(WebSocketDisconnect) as caught, client.websocket_connect("/ws-open"):
        pass
    assert caught.value.code == 1008
    assert "retry after" in caught.value.reason


def test_middleware_and_decorator_count_together_all_or_nothing(make_app: Factory) -> None:
    client = TestClient(make_app(middleware=MIDDLEWARE))
    # /ws allows 2 of its own; the refused third costs the middleware's limit nothing.
    assert [connects(client, "/ws") for _ in range(WS_QUOTA + 1)] == [True] * WS_QUOTA + [False]
    left = MIDDLEWARE_QUOTA - WS_QUOTA
    results = [connects(client, "/ws-open") for _ in range(left + 1)]
    assert results == [True] * left + [False]


# --- a real server ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live() -> Iterator[str]:
    """uvicorn with the websockets implementation, which supports the denial extension."""
    pytest.importorskip("websockets")
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "websocket_app:app", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--workers", "1", "--no-proxy-headers"]
    argv += ["--ws", "websockets-sansio", "--log-level", "warning"]
    with server(argv, port) as base:
        yield base.replace("http://", "ws://")


def test_uvicorn_refuses_a_denied_handshake_with_http_429(live: str) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    for _ in range(WS_QUOTA):
        with connect(live + "/ws", open_timeout=10) as socket:
            assert socket.recv(timeout=10) == GREETING
            socket.send("over the wire")
            assert socket.recv(timeout=10) == "over the wire"
    with pytest.raises(InvalidStatus) as caught:
        connect(live + "/ws", open_timeout=10)
    response = caught.value.response
    assert response.status_code == 429
    headers = {name: value for name, value in response.headers.raw_items()}
    assert rate_headers(headers)["X-RateLimit-Limit"] == str(WS_QUOTA)
    assert int(rate_headers(headers)["Retry-After"]) >= 1
    assert_denied_body(json.loads(response.body), headers)
    # Other endpoints are untouched.
    with connect(live + "/ws-open", open_timeout=10) as socket:
        assert socket.recv(timeout=10) == GREETING
