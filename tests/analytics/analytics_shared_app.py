"""The app of the shared-store analytics tests: one limit with no storage configured (so the
workers of a pre-fork server share it, or ``storage = "shared"`` from flux.toml), each decision
recorded. Served as WSGI (``app``, gunicorn) and ASGI (``asgi``, uvicorn)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from typing import Any, Callable
from urllib.parse import parse_qs

from flux import RateLimiter, analytics

LIMITER = RateLimiter(5, 60)


def _decide(query: str) -> tuple[int, bytes]:
    client = parse_qs(query).get("client", ["0"])[0]
    identity = f"ip:10.2.0.{client}"
    started = time.perf_counter()
    result = LIMITER.hit(identity)
    analytics.record("api", "/hello", result, time.perf_counter() - started, identity)
    body = {"pid": os.getpid(), "allowed": result.allowed, "storage": LIMITER.storage}
    return (200 if result.allowed else 429), json.dumps(body).encode()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """WSGI: count a hit for ?client=<n>; answer 200 or 429 with the worker's pid
    (``/healthz`` counts nothing: the tests wait on it, perhaps asking more than once)."""
    if environ.get("PATH_INFO") == "/healthz":
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]
    status, body = _decide(environ.get("QUERY_STRING", ""))
    start_response(
        "200 OK" if status == 200 else "429 Too Many Requests",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI: the same."""
    if scope.get("path") == "/healthz":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    status, body = _decide(scope.get("query_string", b"").decode())
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
