"""The FastAPI application of the tests: in process (TestClient) and under uvicorn."""

from __future__ import annotations

import asyncio
from typing import Any, Optional

from appconfig import (
    ALGO_PERIOD,
    ALGO_QUOTA,
    BURST_QUOTA,
    CONFIG,
    CUSTOM_BODY,
    EXEMPT_CONFIG,
    JITTER_CONFIG,
    NAMED,
    PARK_QUOTA,
    PERIOD,
    QUIET_CONFIG,
    QUOTA,
    RATES,
    algorithms_of,
    failed,
    internal,
    password_ok,
    plan_of,
)
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

from flux import FluxConfig, rate_limit
from flux.integrations.fastapi import FluxMiddleware


class Item(BaseModel):
    """A response model, to check the OpenAPI schema is what the endpoint declares."""

    id: int
    q: Optional[str] = None  # noqa: UP045 - evaluated by pydantic on Python 3.9 too


class User:
    """What Starlette's AuthenticationMiddleware would put in scope["user"]."""

    is_authenticated = True

    def __init__(self, name: str) -> None:
        self.identity = name


class HeaderAuth:
    """Test authentication: the X-User header names the user."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"x-user":
                    scope["user"] = User(value.decode())
        await self.app(scope, receive, send)


def _algorithm_endpoint(app: FastAPI, policy: str, config: FluxConfig) -> None:
    async def algorithm() -> dict[str, str]:
        return {"policy": policy}

    # Unique names: FastAPI's operation ids, and the limit's name in the headers.
    algorithm.__name__ = algorithm.__qualname__ = f"algo_{policy}"
    limited = rate_limit(requests=ALGO_QUOTA, period=ALGO_PERIOD, policy=policy, config=config)
    app.add_api_route(f"/algo/{policy}", limited(algorithm), methods=["GET"])


def create_app(config: FluxConfig = CONFIG, middleware: dict[str, Any] | None = None) -> FastAPI:
    """A fresh application (fresh limiters), with flux's middleware when options are given."""
    app = FastAPI()
    app.add_middleware(HeaderAuth)
    if middleware is not None:
        app.add_middleware(FluxMiddleware, config=config, **middleware)
    parked = {"count": 0, "release": None}

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/open")
    async def open_view() -> dict[str, bool]:
        return {"open": True}

    @app.get("/api/thing")
    async def api_thing() -> dict[str, bool]:
        return {"api": True}

    @app.get("/sync")
    @rate_limit(requests=QUOTA, period=PERIOD, config=config)
    def sync_view() -> dict[str, str]:
        return {"view": "sync"}

    @app.get("/async")
    @rate_limit(requests=QUOTA, period=PERIOD, config=config)
    async def async_view() -> dict[str, str]:
        return {"view": "async"}

    @app.get("/request")
    @rate_limit(requests=QUOTA, period=PERIOD, config=config)
    async def with_request(request: Request, response: Response) -> dict[str, str]:
        response.headers["X-Own"] = "kept"
        return {"path": request.url.path}

    @app.get("/items/{item_id}", response_model=Item)
    @rate_limit(requests=QUOTA, period=PERIOD, config=config)
    async def item(item_id: int, q: Optional[str] = None) -> Item:  # noqa: UP045
        return Item(id=item_id, q=q)

    @app.get("/response")
    @rate_limit(requests=QUOTA, period=PERIOD, config=config)
    def own_response() -> JSONResponse:
        return JSONResponse({"own": True}, headers={"X-Own": "kept"})

    @app.get("/stacked")
    @rate_limit(requests=2, period=PERIOD, config=config)
    @rate_limit(requests=5, period=PERIOD * 24, config=config)
    async def stacked() -> dict[str, str]:
        return {"view": "stacked"}

    @app.get("/named")
    @rate_limit(NAMED, config=config)
    async def named() -> dict[str, str]:
        return {"view": "named"}

    @app.get("/user")
    @rate_limit(requests=QUOTA, period=PERIOD, key="user", config=config)
    async def user() -> dict[str, str]:
        return {"view": "user"}

    @app.get("/rates")
    @rate_limit(RATES, config=config)
    def rates() -> dict[str, str]:
        return {"view": "rates"}

    @app.get("/plan")
    @rate_limit(limit=plan_of, key="header:X-User", config=config)
    async def plan() -> dict[str, str]:
        return {"view": "plan"}

    @app.get("/internal")
    @rate_limit(requests=QUOTA, period=PERIOD, exempt_when=internal, config=config)
    def internal_view() -> dict[str, str]:
        return {"view": "internal"}

    @app.get("/login")
    @rate_limit(requests=QUOTA, period=PERIOD, deduct_when=failed, config=config)
    async def login(request: Request) -> Response:
        ok = password_ok(request)
        return JSONResponse({"login": ok}, 200 if ok else 401)

    @app.get("/custom")
    @rate_limit(
        requests=1,
        period=PERIOD,
        on_limited=lambda req, result: JSONResponse(CUSTOM_BODY, 429),
        config=config,
    )
    def custom() -> dict[str, str]:
        return {"view": "custom"}

    @app.get("/exempt-ip")
    @rate_limit(requests=1, period=PERIOD, config=EXEMPT_CONFIG)
    async def exempt_ip() -> dict[str, str]:
        return {"view": "exempt-ip"}

    @app.get("/apikey")
    @rate_limit(requests=QUOTA, period=PERIOD, key="header:X-API-Key", config=config)
    def apikey() -> dict[str, str]:
        return {"view": "apikey"}

    @rate_limit(requests=1, period=PERIOD, methods=["POST"], config=config)
    async def post_only() -> dict[str, str]:
        return {"view": "post-only"}

    # Two routes, one function: distinct operation ids keep the OpenAPI document valid.
    app.add_api_route("/post-only", post_only, methods=["GET"], operation_id="post_only_get")
    app.add_api_route("/post-only", post_only, methods=["POST"], operation_id="post_only_post")

    @app.get("/burst")
    @rate_limit(requests=BURST_QUOTA, period=PERIOD, config=config)
    def burst() -> dict[str, str]:
        return {"view": "burst"}

    @app.get("/burst-async")
    @rate_limit(requests=BURST_QUOTA, period=PERIOD, config=config)
    async def burst_async() -> dict[str, str]:
        return {"view": "burst-async"}

    @app.get("/jitter")
    @rate_limit(requests=1, period=PERIOD, config=JITTER_CONFIG)
    async def jitter() -> dict[str, str]:
        return {"view": "jitter"}

    @app.get("/quiet")
    @rate_limit(requests=1, period=PERIOD, config=QUIET_CONFIG)
    def quiet() -> dict[str, str]:
        return {"view": "quiet"}

    @app.get("/parked")
    @rate_limit(requests=PARK_QUOTA, period=PERIOD, config=config)
    async def park() -> dict[str, int]:
        # Allowed requests wait here until /release: proof that the loop stays free.
        if parked["release"] is None:
            parked["release"] = asyncio.Event()
        parked["count"] += 1
        await parked["release"].wait()
        return {"parked": parked["count"]}

    @app.get("/parked-count")
    async def parked_count() -> dict[str, int]:
        return {"count": parked["count"]}

    @app.post("/release")
    async def release() -> dict[str, bool]:
        if parked["release"] is None:
            parked["release"] = asyncio.Event()
        parked["release"].set()
        return {"released": True}

    for policy in algorithms_of(config):
        _algorithm_endpoint(app, policy, config)
    return app


app = create_app()
