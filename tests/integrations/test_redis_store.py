"""The same decorator on the Redis store: nothing in the integrations changes but the config."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from flux import FluxConfig, ManualClock, RateLimitExceeded, rate_limit
from flux.config import RedisConfig
from flux.decorators import limits_of

SUPPORT = Path(__file__).parents[1] / "support"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

from redis_server import RedisServer, redis_available  # noqa: E402

if not redis_available():  # pragma: no cover - `make test-python` installs redis-server
    pytest.skip("redis-server is not installed (make redis-server)", allow_module_level=True)


@pytest.fixture(scope="module")
def config() -> Iterator[FluxConfig]:
    server = RedisServer().start()
    try:
        yield FluxConfig(redis=RedisConfig(url=server.url), storage="redis")
    finally:
        server.stop()


def test_stacked_limits_are_all_or_nothing_on_redis(config: FluxConfig, clock: ManualClock) -> None:
    @rate_limit(requests=2, period=60, config=config)
    @rate_limit(requests=5, period=3600, config=config)
    def work() -> str:
        return "ok"

    assert [work(), work()] == ["ok", "ok"]
    for _ in range(3):
        with pytest.raises(RateLimitExceeded):
            work()
    hourly = limits_of(work)[1].limiter
    assert hourly.config.storage == "redis"
    assert hourly.peek("global").remaining == 3


def test_async_endpoint_on_redis(config: FluxConfig, clock: ManualClock) -> None:
    app = FastAPI()

    @app.get("/x")
    @rate_limit(requests=2, period=60, config=config)
    async def endpoint() -> dict[str, bool]:
        return {"ok": True}

    client = TestClient(app)
    replies = [client.get("/x") for _ in range(3)]
    assert [r.status_code for r in replies] == [200, 200, 429]
    assert replies[0].headers["RateLimit"] == '"endpoint";r=1;t=30'
    assert replies[2].headers["Retry-After"] == "30"

    @rate_limit(requests=1, period=60, config=config)
    async def plain() -> str:
        return "done"

    async def run() -> None:
        assert await plain() == "done"
        with pytest.raises(RateLimitExceeded):
            await plain()

    asyncio.run(run())


def test_middleware_and_view_limits_are_one_hit_on_redis(config: FluxConfig) -> None:
    # A request the view refuses costs the middleware's limit nothing (one multi-limit
    # script for both), so the rest of the site keeps its share.
    from flux.integrations.fastapi import FluxMiddleware

    app = FastAPI()
    app.add_middleware(FluxMiddleware, default={"requests": 5, "period": 3600}, config=config)

    @app.get("/tight")
    @rate_limit(requests=2, period=3600, config=config)
    async def tight() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/open")
    async def open_view() -> dict[str, str]:
        return {"ok": "yes"}

    client = TestClient(app)
    assert [client.get("/tight").status_code for _ in range(4)] == [200, 200, 429, 429]
    assert [client.get("/open").status_code for _ in range(4)] == [200, 200, 200, 429]


def test_deduct_when_on_redis_counts_only_failures(config: FluxConfig) -> None:
    app = FastAPI()

    @app.get("/login")
    @rate_limit("3/hour", deduct_when=lambda r: r.status_code >= 400, config=config)
    async def login(ok: bool = False) -> Any:
        from fastapi.responses import JSONResponse

        return JSONResponse({"ok": ok}, 200 if ok else 401)

    client = TestClient(app)
    assert [client.get("/login?ok=true").status_code for _ in range(6)] == [200] * 6
    assert [client.get("/login").status_code for _ in range(4)] == [401] * 3 + [429]


def test_limit_chosen_per_request_on_redis(config: FluxConfig) -> None:
    app = FastAPI()
    plans = {"free": "1/hour", "pro": "3/hour"}

    @app.get("/api")
    @rate_limit(limit=lambda r: plans.get(r.headers.get("X-Plan", "free")), config=config)
    def api() -> dict[str, bool]:
        return {"ok": True}

    client = TestClient(app)
    assert [client.get("/api").status_code for _ in range(2)] == [200, 429]
    pro = {"X-Plan": "pro"}
    assert [client.get("/api", headers=pro).status_code for _ in range(4)] == [200] * 3 + [429]
    assert [client.get("/api", headers={"X-Plan": "none"}).status_code] == [200]
