"""Websocket endpoints of the tests, FastAPI and Starlette: in process and under uvicorn.

Each application has a decorated endpoint (``/ws``: 2 connections per hour per client
address; ``/ws-user``: per ``scope["user"]``) and an undecorated one (``/ws-open``), each
accepting and then greeting. ``middleware`` adds flux's ASGI middleware; ``denial=False``
hides the ASGI ``websocket.http.response`` extension, as a server without it would.
"""

from __future__ import annotations

from typing import Any

from appconfig import CONFIG
from fastapi import FastAPI, WebSocket
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette_app import HeaderAuth

from flux import rate_limit
from flux.integrations.fastapi import FluxMiddleware

WS_QUOTA = 2
WS_PERIOD = 3600
GREETING = "hello"


class NoDenialExtension:
    """A server without the websocket denial response extension."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            extensions = dict(scope.get("extensions") or {})
            extensions.pop("websocket.http.response", None)
            scope = {**scope, "extensions": extensions}
        await self.app(scope, receive, send)


async def greet(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(GREETING)
    # Echo until the client leaves: an allowed connection is a normal one.
    async for text in websocket.iter_text():
        await websocket.send_text(text)


def _stack(middleware: dict[str, Any] | None, denial: bool) -> list[Middleware]:
    stack = [] if denial else [Middleware(NoDenialExtension)]
    stack.append(Middleware(HeaderAuth))
    if middleware:
        stack.append(Middleware(FluxMiddleware, config=CONFIG, **middleware))
    return stack


async def ping(request: Request) -> Response:
    return JSONResponse({"ok": True})


def create_fastapi(middleware: dict[str, Any] | None = None, denial: bool = True) -> FastAPI:
    """A FastAPI application with fresh limits."""
    app = FastAPI(middleware=_stack(middleware, denial))
    app.add_api_route("/ping", ping)

    @app.websocket("/ws")
    @rate_limit(requests=WS_QUOTA, period=WS_PERIOD, config=CONFIG)
    async def limited(websocket: WebSocket) -> None:
        await greet(websocket)

    @app.websocket("/ws-user")
    @rate_limit(requests=WS_QUOTA, period=WS_PERIOD, key="user", config=CONFIG)
    async def per_user(websocket: WebSocket) -> None:
        await greet(websocket)

    @app.websocket("/ws-open")
    async def open_socket(websocket: WebSocket) -> None:
        await greet(websocket)

    return app


def create_starlette(middleware: dict[str, Any] | None = None, denial: bool = True) -> Starlette:
    """A Starlette application with fresh limits (endpoints take the socket positionally)."""

    @rate_limit(requests=WS_QUOTA, period=WS_PERIOD, config=CONFIG)
    async def limited(websocket):  # type: ignore[no-untyped-def]  # unannotated, by name
        await greet(websocket)

    @rate_limit(requests=WS_QUOTA, period=WS_PERIOD, key="user", config=CONFIG)
    async def per_user(websocket: WebSocket) -> None:
        await greet(websocket)

    routes = [
        Route("/ping", ping),
        WebSocketRoute("/ws", limited),
        WebSocketRoute("/ws-user", per_user),
        WebSocketRoute("/ws-open", greet),
    ]
    return Starlette(routes=routes, middleware=_stack(middleware, denial))


app = create_fastapi()
starlette_app = create_starlette()
