"""The per-request policies (rate strings, tiers, exemptions, deduct_when, on_limited) on the
Redis and shared-memory stores, through the same contract as on the embedded store: Flask,
FastAPI, Starlette.

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
from flux.config import RedisConfig, SharedConfig

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


@pytest.fixture(params=["redis", "shared"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> FluxConfig:
    """The test applications' configuration on Redis or a shared region, with keys of this
    test's own."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    config = FluxConfig(
        redis=RedisConfig(url=url) if url else None,
        shared=SharedConfig(path=str(tmp_path / "region")),
        flux=replace(CONFIG.flux, key_prefix=f"policies{next(_prefixes)}:"),
        rate_limit=CONFIG.rate_limit,
        rate_limits=dict(CONFIG.rate_limits),
        storage=request.param,
    )
    assert config.storage == request.param
    return config


class TestFlaskOnStores(PolicyContract):
    @pytest.fixture
    def make_client(self, config: FluxConfig) -> MakeClient:
        def make(peer: str = "127.0.0.1", middleware: dict[str, Any] | None = None) -> Client:
            client = flask_app.create_app(config, middleware=middleware).test_client()
            client.environ_base["REMOTE_ADDR"] = peer
            return FlaskTestClient(client)

        return make


class TestFastAPIOnStores(PolicyContract):
    @pytest.fixture
    def make_client(self, config: FluxConfig) -> MakeClient:
        def make(peer: str = "127.0.0.1", middleware: dict[str, Any] | None = None) -> Client:
            app = fastapi_app.create_app(config, middleware=middleware)
            return FastAPIClient(TestClient(app, client=(peer, 50000)))

        return make


class TestStarletteOnStores(PolicyContract):
    @pytest.fixture
    def make_client(self, config: FluxConfig) -> MakeClient:
        def make(peer: str = "127.0.0.1", middleware: dict[str, Any] | None = None) -> Client:
            app = starlette_app.create_app(config, middleware=middleware)
            return StarletteClient(StarletteTestClient(app, client=(peer, 50000)))

        return make


def test_these_limits_are_on_the_store(config: FluxConfig) -> None:
    from flux import rate_limit

    assert rate_limit("2/hour", config=config).limiter.storage == config.storage
    assert rate_limit("pro_tier", config=config).limiter.storage == config.storage
