"""The Starlette application of the tests: in process (TestClient) and under uvicorn."""

from __future__ import annotations

import asyncio
from typing import Any

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
from starlette.applications import Starlette
from starlette.endpoints import HTTPEndpoint
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from flux import FluxConfig, rate_limit
from flux.integrations.fastapi import FluxMiddleware


class User:
    """What Starlette's AuthenticationMiddleware would put in scope["user"]."""

    is_authenticated = True

    def __init__(self, name: str) -> None:
        self.display_name = name


class HeaderAuth:
    """Test authentication, for HTTP and websocket alike: the X-User header names the user."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            for name, value in scope["headers"]:
                if name == b"x-user":
                    scope["user"] = User(value.decode())
        await self.app(scope, receive, send)


def create_app(config: FluxConfig = CONFIG, middleware: dict[str, Any] | None = None) -> Starlette:
    """A fresh application (fresh limiters), with flux's middleware when options are given."""

    def limited(**kwargs: Any) -> Any:
        kwargs.setdefault("requests", QUOTA)
        kwargs.setdefault("period", PERIOD)
        return rate_limit(config=config, **kwargs)

    parked: dict[str, Any] = {"count": 0, "release": None}

    async def ping(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def open_view(request: Request) -> Response:
        return JSONResponse({"open": True})

    @limited()
    def sync_view(request: Request) -> Response:
        return JSONResponse({"view": "sync"})

    @limited()
    async def async_view(request: Request) -> Response:
        return JSONResponse({"view": "async"})

    @limited(requests=2)
    @limited(requests=5, period=PERIOD * 24)
    async def stacked(request: Request) -> Response:
        return JSONResponse({"view": "stacked"})

    @rate_limit(NAMED, config=config)
    async def named(request: Request) -> Response:
        return JSONResponse({"view": "named"})

    @limited(key="header:X-API-Key")
    async def apikey(request: Request) -> Response:
        return PlainTextResponse("plain text")

    @limited(key="user")
    async def user(request: Request) -> Response:
        return JSONResponse({"view": "user"})

    @limited(requests=1, methods=["POST"])
    async def post_only(request: Request) -> Response:
        return JSONResponse({"view": "post-only"})

    @rate_limit(requests=1, period=PERIOD, config=JITTER_CONFIG)
    async def jitter(request: Request) -> Response:
        return JSONResponse({"view": "jitter"})

    @rate_limit(requests=1, period=PERIOD, config=QUIET_CONFIG)
    def quiet(request: Request) -> Response:
        return JSONResponse({"view": "quiet"})

    @limited(requests=BURST_QUOTA)
    async def burst_async(request: Request) -> Response:
        return JSONResponse({"view": "burst-async"})

    @limited(requests=BURST_QUOTA)
    def burst(request: Request) -> Response:
        return JSONResponse({"view": "burst"})

    @limited(requests=PARK_QUOTA)
    async def park(request: Request) -> Response:
        # Allowed requests wait here until /release: proof that the loop stays free.
        if parked["release"] is None:
            parked["release"] = asyncio.Event()
        parked["count"] += 1
        await parked["release"].wait()
        return JSONResponse({"parked": parked["count"]})

    async def parked_count(request: Request) -> Response:
        return JSONResponse({"count": parked["count"]})

    async def release(request: Request) -> Response:
        if parked["release"] is None:
            parked["release"] = asyncio.Event()
        parked["release"].set()
        return JSONResponse({"released": True})

    class Endpoint(HTTPEndpoint):
        """A class-based endpoint with a limited method."""

        @limited()
        async def get(self, request: Request) -> Response:
            return JSONResponse({"view": "endpoint"})

    def algorithm_route(policy: str) -> Route:
        async def algorithm(request: Request) -> Response:
            return JSONResponse({"policy": policy})

        algorithm.__name__ = algorithm.__qualname__ = f"algo_{policy}"
        limit = rate_limit(requests=ALGO_QUOTA, period=ALGO_PERIOD, policy=policy, config=config)
        return Route(f"/algo/{policy}", limit(algorithm))

    @rate_limit(RATES, config=config)
    async def rates(request: Request) -> Response:
        return JSONResponse({"view": "rates"})

    @rate_limit(limit=plan_of, key="header:X-User", config=config)
    async def plan(request: Request) -> Response:
        return JSONResponse({"view": "plan"})

    @limited(exempt_when=internal)
    async def internal_view(request: Request) -> Response:
        return JSONResponse({"view": "internal"})

    @limited(deduct_when=failed)
    async def login(request: Request) -> Response:
        return JSONResponse({"login": password_ok(request)}, 200 if password_ok(request) else 401)

    @limited(requests=1, on_limited=lambda req, result: JSONResponse(CUSTOM_BODY, 429))
    def custom(request: Request) -> Response:
        return JSONResponse({"view": "custom"})

    @rate_limit(requests=1, period=PERIOD, config=EXEMPT_CONFIG)
    async def exempt_ip(request: Request) -> Response:
        return JSONResponse({"view": "exempt-ip"})

    routes = [
        Route("/rates", rates),
        Route("/plan", plan),
        Route("/internal", internal_view),
        Route("/login", login),
        Route("/custom", custom),
        Route("/exempt-ip", exempt_ip),
        Route("/ping", ping),
        Route("/open", open_view),
        Route("/api/thing", open_view),
        Route("/sync", sync_view),
        Route("/async", async_view),
        Route("/stacked", stacked),
        Route("/named", named),
        Route("/apikey", apikey),
        Route("/user", user),
        Route("/post-only", post_only, methods=["GET", "POST"]),
        Route("/jitter", jitter),
        Route("/quiet", quiet),
        Route("/burst", burst),
        Route("/burst-async", burst_async),
        Route("/parked", park),
        Route("/parked-count", parked_count),
        Route("/release", release, methods=["POST"]),
        Route("/endpoint", Endpoint),
        *[algorithm_route(policy) for policy in algorithms_of(config)],
    ]
    stack = [Middleware(HeaderAuth)]
    if middleware:
        stack.append(Middleware(FluxMiddleware, config=config, **middleware))
    return Starlette(routes=routes, middleware=stack)


app = create_app()
