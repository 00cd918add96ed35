"""A tiny WSGI application for the gunicorn test: one limit, each request recorded directly.

Analytics configures itself from flux.toml ($FLUX_CONFIG) on the first request of each worker:
Redis as the shared sink, the analytics server on [analytics] port in whichever worker binds
it first.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from typing import Any, Callable
from urllib.parse import parse_qs

from flux import RateLimiter, analytics
from flux.config import FluxConfig

# The decisions themselves on the embedded store of each worker (chosen explicitly: with no
# storage configured, gunicorn's workers would share one limit); analytics go to Redis.
LIMITER = RateLimiter(3, 60, config=FluxConfig(storage="memory"))


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Count a hit for ?client=<n>; answer 200 or 429 with the worker's pid."""
    client = parse_qs(environ.get("QUERY_STRING", "")).get("client", ["0"])[0]
    identity = f"ip:10.1.0.{client}"
    started = time.perf_counter()
    result = LIMITER.hit(identity)
    analytics.record("api", "/hello", result, time.perf_counter() - started, identity)
    body = json.dumps({"pid": os.getpid(), "allowed": result.allowed}).encode()
    status = "200 OK" if result.allowed else "429 Too Many Requests"
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
