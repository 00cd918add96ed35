"""Applications written against flux-limiter 0.1.19, unchanged, on both of flux's stores.

Each application is a module written into the project directory and imported, as its users
wrote them: settings assigned on ``get_config()`` at import time, ``preload_scripts()`` at
FastAPI start-up, decorators from its README, ``RedisClient`` to check the server. Nothing
passes a ``config=``: everything comes from the project's flux.toml.
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from compat_project import Project
from fastapi.testclient import TestClient
from redis_server import free_port

import flux
from flux import FluxConfig, RateLimitExceeded

APPS = Path(__file__).parents[1] / "integrations" / "apps"
if str(APPS) not in sys.path:
    sys.path.insert(0, str(APPS))

FASTAPI_APP = """
from fastapi import FastAPI, Request
from flux import rate_limit, RateLimitExceeded, preload_scripts
from flux.config import get_config

get_config().fail_silently = False

app = FastAPI()

@app.on_event("startup")
async def startup_event():
    app.state.preloaded = preload_scripts()

@app.get("/gcra")
@rate_limit(requests=10, period=3600, policy="gcra")
async def gcra_endpoint():
    return {"status": "ok"}

@app.get("/token_bucket")
@rate_limit(requests=10, period=3600, policy="token_bucket")
async def tb_endpoint():
    return {"status": "ok"}

@app.get("/leaky_bucket")
@rate_limit(requests=10, period=3600, policy="leaky_bucket")
async def lb_endpoint():
    return {"status": "ok"}

@app.get("/fixed_window")
@rate_limit(requests=10, period=3600, policy="fixed_window")
async def fw_endpoint():
    return {"status": "ok"}

@app.get("/user")
@rate_limit(requests=5, period=3600, key=lambda r: r.headers.get("X-User-ID"))
async def user_endpoint(request: Request):
    return {"user": request.headers.get("X-User-ID")}

@app.get("/strict")
@rate_limit(name="strict")
async def strict_endpoint(request: Request):
    return {"message": "Hello World"}
"""


def cached_scripts(project: Project) -> int:
    """How many scripts the project's Redis holds (0 on the embedded store)."""
    if project.server is None:
        return 0
    info = project.server.command("INFO", "memory")
    text = info.decode() if isinstance(info, bytes) else str(info)
    line = next(x for x in text.splitlines() if x.startswith("number_of_cached_scripts:"))
    return int(line.split(":")[1])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # FastAPI's on_event, as its users had
def test_fastapi_app_configured_at_import_preloading_at_startup(project: Project) -> None:
    app = project.load("fastapi_app", FASTAPI_APP).app
    with TestClient(app) as client:
        if project.store == "redis":
            assert app.state.preloaded > 0
            assert cached_scripts(project) == app.state.preloaded
        else:
            assert app.state.preloaded == 0
        for endpoint in ("/gcra", "/token_bucket", "/leaky_bucket", "/fixed_window"):
            assert [client.get(endpoint).status_code for _ in range(10)] == [200] * 10
            denied = client.get(endpoint)
            assert denied.status_code == 429 and "retry_after" in denied.json()
            assert int(denied.headers["Retry-After"]) >= 1
        alice = {"X-User-ID": "alice"}
        assert [client.get("/user", headers=alice).status_code for _ in range(6)] == [200] * 5 + [
            429
        ]
        assert client.get("/user", headers={"X-User-ID": "bob"}).status_code == 200
        assert [client.get("/strict").status_code for _ in range(3)] == [200, 200, 429]
    if project.store == "redis":
        assert all(key.startswith("compat:") for key in project.redis_keys())
        assert project.redis_keys()


def test_readme_flask_and_django_examples(project: Project) -> None:
    import django_site

    django_site.setup()
    from django.test import RequestFactory

    app = project.load(
        "readme_views",
        """
from django.http import JsonResponse
from flask import Flask
from flux import rate_limit

app = Flask(__name__)

@app.route("/login")
@rate_limit(requests=5, period=300) # 5 tries every 5 minutes
def login():
    return "Login Page"

@rate_limit(requests=20, period=60)
def my_view(request):
    return JsonResponse({"ok": True})

@rate_limit(name="strict")
def expensive_call():
    pass
""",
    )
    client = app.app.test_client()
    assert [client.get("/login").status_code for _ in range(6)] == [200] * 5 + [429]
    factory = RequestFactory()
    replies = [app.my_view(factory.get("/")) for _ in range(21)]
    assert [r.status_code for r in replies] == [200] * 20 + [429]
    app.expensive_call()
    app.expensive_call()
    with pytest.raises(RateLimitExceeded):
        app.expensive_call()


def test_limiter_api_as_its_tests_used_it(project: Project) -> None:
    from flux import RateLimiter, create_limiter, rate_limit

    limiter = RateLimiter(requests=3, period=60)
    assert limiter.storage == project.store
    assert [limiter.hit("user:123").allowed for _ in range(4)] == [True] * 3 + [False]
    assert limiter.is_allowed("user:456")
    strict = RateLimiter.from_config("strict")
    assert (strict.requests, strict.policy) == (2, "token_bucket")
    preset = create_limiter("strict")
    preset.require("k")
    preset.require("k")
    with pytest.raises(RateLimitExceeded) as denied:
        preset.require("k")
    assert denied.value.to_headers()["X-RateLimit-Remaining"] == "0"

    @rate_limit(requests=10, period=60, key=lambda: "test_func")
    def my_func() -> str:
        """My docstring."""
        return "ok"

    assert my_func() == "ok"
    assert my_func.__name__ == "my_func" and "docstring" in (my_func.__doc__ or "")


def test_redis_client_and_preload_on_a_real_server(project: Project) -> None:
    if project.server is None:
        assert flux.preload_scripts() == 0  # the embedded store has no scripts to load
        return
    client = flux.RedisClient("127.0.0.1", project.server.port, pool_size=5)
    assert client.ping() == "PONG"
    errors: list[str] = []

    def worker() -> None:
        try:
            for _ in range(10):
                if client.ping() != "PONG":
                    errors.append("ping failed")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(str(exc))

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert client.load_scripts() == flux.preload_scripts() == cached_scripts(project) > 0


def test_redis_down_at_startup(caplog: Any) -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(RuntimeError, match="Redis Connection Failed"):
        flux.RedisClient("127.0.0.1", port)
    with pytest.raises(flux.ConnectionError):
        flux.preload_scripts(FluxConfig(fail_silently=False, redis_port=port))
    # fail_silently: start anyway (hits will fail open), saying why once.
    with caplog.at_level(logging.WARNING, logger="flux"):
        assert flux.preload_scripts(FluxConfig(fail_silently=True, redis_port=port)) == 0
    assert any(str(port) in record.getMessage() for record in caplog.records)
