"""The per-request policies (rate strings, tiers, exemptions, deduct_when, on_limited) on the
Redis store, through the same contract as on the embedded store: Flask, FastAPI, Starlette.

Django's test views are declared at import on the embedded configuration; its Redis coverage
is tests/redis (the decorator is the same code whatever the framework)."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import fastapi_app
import flask_app
import pytest
import starlette_app
from appconfig import CONFIG
from contract import Client, MakeClient, PolicyContract
from fastapi.testclient import TestClient
from starlette.testclient import TestClient as StarletteTestClient
from test_fastapi import FastAPIClient
from test_flask import FlaskTestClient
from test_starlette import StarletteClient

from flux import FluxConfig
from flux.config import RedisConfig

SUPPORT = Path(__file__).parents[1] / "support"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

from redis_server import RedisServer, redis_available  # noqa: E402

if not redis_available():  # pragma: no cover - `make test-python` installs redis-server
    pytest.skip("redis-server is not installed (make redis-server)", allow_module_level=True)

_prefixes = itertools.count()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def config(redis_url: str) -> FluxConfig:
    """The test applications' configuration on Redis, with keys of this test's own."""
    config = FluxConfig(
        redis=RedisConfig(url=redis_url),
        flux=replace(CONFIG.flux, key_prefix=f"policies{next(_prefixes)}:"),
        rate_limit=CONFIG.rate_limit,
        rate_limits=dict(CONFIG.rate_limits),
        storage="redis",
    )
    assert config.storage == "redis"
    return config


class TestFlaskOnRedis(PolicyContract):
    @pytest.fixture
    def make_client(self, config: FluxConfig) -> MakeClient:
        def make(peer: str = "127.0.0.1", middleware: dict[str, Any] | None = None) -> Client:
            client = flask_app.create_app(config, middleware=middleware).test_client()
            client.environ_base["REMOTE_ADDR"] = peer
            return FlaskTestClient(client)

        return make


class TestFastAPIOnRedis(PolicyContract):
    @pytest.fixture
    def make_client(self, config: FluxConfig) -> MakeClient:
        def make(peer: str = "127.0.0.1", middleware: dict[str, Any] | None = None) -> Client:
            app = fastapi_app.create_app(config, middleware=middleware)
            return FastAPIClient(TestClient(app, client=(peer, 50000)))

        return make


class TestStarletteOnRedis(PolicyContract):
    @pytest.fixture
    def make_client(self, config: FluxConfig) -> MakeClient:
        def make(peer: str = "127.0.0.1", middleware: dict[str, Any] | None = None) -> Client:
            app = starlette_app.create_app(config, middleware=middleware)
            return StarletteClient(StarletteTestClient(app, client=(peer, 50000)))

        return make


def test_these_limits_are_on_redis(config: FluxConfig) -> None:
    from flux import rate_limit

    assert rate_limit("2/hour", config=config).limiter.storage == "redis"
    assert rate_limit("pro_tier", config=config).limiter.storage == "redis"
