"""Django and DRF: Django's test client for behaviour, gunicorn for real concurrency and proxies."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from typing import Any

import django_site
import pytest
from appconfig import CONFIG
from contract import Client, Contract, MakeClient, PolicyContract, Reply, ServerContract
from django.test import AsyncClient, RequestFactory, override_settings
from django.test import Client as DjangoClient
from fluxtest import free_port, python_tool, rate_headers, server

from flux.integrations.django import FluxMiddleware


def _meta(headers: Mapping[str, str] | None) -> dict[str, str]:
    return {"HTTP_" + k.upper().replace("-", "_"): v for k, v in (headers or {}).items()}


class DjangoTestClient(Client):
    def __init__(self, client: DjangoClient) -> None:
        self.client = client

    def request(self, method: str, path: str, headers: Mapping[str, str] | None = None) -> Reply:
        response = self.client.generic(method, path, **_meta(headers))
        return Reply(response.status_code, dict(response.headers), response.content)


@pytest.fixture
def make_client() -> MakeClient:
    def make(peer: str = "127.0.0.1", middleware: dict[str, Any] | None = None) -> Client:
        client = DjangoClient(REMOTE_ADDR=peer)
        if middleware is not None:
            stack = [*django_site.SETTINGS["MIDDLEWARE"], django_site.FLUX_MIDDLEWARE]
            # The handler reads MIDDLEWARE (and FLUX_MIDDLEWARE) once, when it loads it.
            options = {**middleware, "config": CONFIG}
            with override_settings(MIDDLEWARE=stack, FLUX_MIDDLEWARE=options):
                client.handler.load_middleware()
        return DjangoTestClient(client)

    return make


class TestDjango(Contract, PolicyContract):
    """The shared contract through Django's test client."""


@pytest.fixture(scope="module")
def live() -> Iterator[str]:
    # gunicorn: one worker process (the embedded store lives in it), eight threads.
    port = free_port()
    argv = [python_tool("gunicorn"), "--workers=1", "--threads=8", f"--bind=127.0.0.1:{port}"]
    with server([*argv, "--log-level=warning", "django_site:application"], port) as base:
        yield base


class TestDjangoUnderGunicorn(ServerContract):
    """The server contract under gunicorn."""


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/cbv/dispatch", "DispatchView.dispatch"),
        ("/cbv/direct", "DirectView.get"),
        ("/cbv/async", "AsyncDirectView.get"),
        ("/drf/function", "drf_function"),
    ],
)
def test_class_based_and_drf_views_are_limited(path: str, name: str) -> None:
    client = DjangoClient()
    replies = [client.get(path) for _ in range(4)]
    assert [r.status_code for r in replies] == [200, 200, 200, 429]
    assert rate_headers(replies[0].headers)["RateLimit"] == f'"{name}";r=2;t=1200'
    assert replies[3].json()["error"] == "Too Many Requests"


def test_method_decorator_with_a_list_is_all_or_nothing() -> None:
    client = DjangoClient()
    replies = [client.get("/cbv/list") for _ in range(4)]
    assert [r.status_code for r in replies] == [200, 200, 429, 429]
    hour, day = '"MethodListView.get[2/3600s]"', '"MethodListView.get[5/86400s]"'
    assert replies[3].headers["RateLimit"] == f"{hour};r=0;t=3600, {day};r=3;t=34560"


def test_drf_view_limits_per_authenticated_user() -> None:
    client = DjangoClient()
    alice = {"HTTP_X_USER": "alice"}
    assert [client.get("/drf/view", **alice).status_code for _ in range(4)] == [200] * 3 + [429]
    assert client.get("/drf/view", HTTP_X_USER="bob").json()["user"] == "drf-bob"
    assert client.get("/drf/view").status_code == 200  # anonymous: per IP


def test_async_client_on_async_views() -> None:
    async def run() -> list[int]:
        client = AsyncClient()
        return [(await client.get("/async")).status_code for _ in range(4)]

    assert asyncio.run(run()) == [200, 200, 200, 429]


def test_plain_http_response_gets_the_headers() -> None:
    reply = DjangoClient().get("/apikey", HTTP_X_API_KEY="k")
    assert reply.content == b"plain text"
    assert reply.headers["X-RateLimit-Remaining"] == "2"


def test_async_middleware_stack() -> None:
    request = RequestFactory().get("/open")

    async def view(request: Any) -> Any:
        from django.http import JsonResponse

        return JsonResponse({"ok": True})

    with override_settings(FLUX_MIDDLEWARE={"default": {"requests": 1, "period": 60}}):
        middleware = FluxMiddleware(view)

    async def run() -> list[int]:
        return [(await middleware(request)).status_code for _ in range(2)]

    assert asyncio.run(run()) == [200, 429]


def test_deduct_when_on_a_drf_api_view(make_client: MakeClient) -> None:
    client = make_client()
    right = {"X-Password": "right"}
    assert [client.get("/drf/login", headers=right).status for _ in range(6)] == [200] * 6
    assert [client.get("/drf/login").status for _ in range(4)] == [401] * 3 + [429]


@pytest.fixture(scope="module")
def redis_on_its_port() -> Iterator[None]:
    """The Redis of the /redis/ views (their config names REDIS_PORT)."""
    from appconfig import REDIS_PORT
    from redis_server import RedisServer

    server = RedisServer(port=REDIS_PORT).start()
    try:
        yield
    finally:
        server.stop()


@pytest.mark.usefixtures("redis_on_its_port")
class TestDjangoOnRedis(PolicyContract):
    """The policy contract on Redis: the same views, declared on REDIS_CONFIG under /redis/."""

    @pytest.fixture
    def make_client(self) -> MakeClient:
        def make(peer: str = "127.0.0.1", middleware: dict[str, Any] | None = None) -> Client:
            from appconfig import REDIS_CONFIG

            client = DjangoClient(REMOTE_ADDR=peer)
            if middleware is not None:
                stack = [*django_site.SETTINGS["MIDDLEWARE"], django_site.FLUX_MIDDLEWARE]
                options = {**middleware, "config": REDIS_CONFIG}
                with override_settings(MIDDLEWARE=stack, FLUX_MIDDLEWARE=options):
                    client.handler.load_middleware()
                return DjangoTestClient(client)  # the middleware's own limit, on every path
            return _Prefixed(DjangoTestClient(client), "/redis")

        return make

    def test_cbv_exempt_when(self, make_client: MakeClient) -> None:
        client = make_client()
        internal = {"X-Internal": "yes"}
        assert [client.get("/cbv/internal", headers=internal).status for _ in range(5)] == [200] * 5
        assert [client.get("/cbv/internal").status for _ in range(4)] == [200] * 3 + [429]


class _Prefixed(Client):
    def __init__(self, client: Client, prefix: str) -> None:
        self.client, self.prefix = client, prefix

    def request(self, method: str, path: str, headers: Mapping[str, str] | None = None) -> Reply:
        return self.client.request(method, self.prefix + path, headers)


def test_cbv_exempt_when_on_the_embedded_store(make_client: MakeClient) -> None:
    client = make_client()
    internal = {"X-Internal": "yes"}
    assert [client.get("/cbv/internal", headers=internal).status for _ in range(5)] == [200] * 5
    assert [client.get("/cbv/internal").status for _ in range(4)] == [200] * 3 + [429]
