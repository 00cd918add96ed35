"""Fail closed (``fail_silently = false``) with Redis down: a 503 with ``Retry-After``, never
a 500 with a traceback, and no client identity in any message or log line.

Week-one fault: every request got HTTP 500 and a traceback whose message held the raw key,
API key included (``flux:closed:{header:X-K:<the API key>}:gcra``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import fastapi
import httpx
import pytest
from fastapi import Request
from fastapi.responses import PlainTextResponse
from fastapi.testclient import TestClient
from fluxredis import redis_config
from http_server import wait_until_answers
from redis_server import free_port

from flux import ConnectionError, RateLimiter, rate_limit
from flux.config import LimitConfig
from flux.integrations.fastapi import FluxMiddleware

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
SECRET = "sk-live-4f9a7c2e81"


def _down_config(**options: Any) -> Any:
    return redis_config(f"redis://127.0.0.1:{free_port()}", fail_silently=False, **options)


def test_flask_view_answers_503_with_retry_after() -> None:
    flask = pytest.importorskip("flask")
    app = flask.Flask(__name__)

    @app.get("/")
    @rate_limit(requests=5, period=60, key="header:X-API-Key", config=_down_config())
    def index() -> str:
        return "ok"

    reply = app.test_client().get("/", headers={"X-API-Key": SECRET})
    assert reply.status_code == 503
    assert reply.headers["Retry-After"] == "1"
    assert reply.get_json()["error"] == "Service Unavailable"
    assert SECRET not in reply.get_data(as_text=True)


def test_fastapi_view_and_middleware_answer_503_and_a_hook_replaces_it() -> None:
    seen: list[str] = []

    def own(request: Any, error: ConnectionError) -> Any:
        seen.append(str(error))
        return PlainTextResponse("limiter down", status_code=503, headers={"Retry-After": "7"})

    app = fastapi.FastAPI()
    config = _down_config()

    @app.get("/plain")
    @rate_limit(requests=5, period=60, key="header:X-API-Key", config=config)
    async def plain(request: Request) -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/hooked")
    @rate_limit(requests=5, period=60, config=config, on_unavailable=own)
    async def hooked(request: Request) -> dict[str, str]:
        return {"ok": "yes"}

    client = TestClient(app)
    reply = client.get("/plain", headers={"X-API-Key": SECRET})
    assert (reply.status_code, reply.headers["Retry-After"]) == (503, "1")
    hooked_reply = client.get("/hooked")
    assert (hooked_reply.status_code, hooked_reply.text) == (503, "limiter down")
    assert hooked_reply.headers["Retry-After"] == "7"
    # The error the hook sees never names the client (TestClient's peer is "testclient").
    assert seen and "testclient" not in seen[0]

    guarded = fastapi.FastAPI()
    guarded.add_middleware(FluxMiddleware, key="header:X-API-Key", config=_down_config())

    @guarded.get("/")
    async def root() -> dict[str, str]:
        return {"ok": "yes"}

    reply = TestClient(guarded).get("/", headers={"X-API-Key": SECRET})
    assert (reply.status_code, reply.headers["Retry-After"]) == (503, "1")


def test_a_plain_function_still_raises_and_the_message_hides_the_identity() -> None:
    limiter = RateLimiter(5, 60, name="login", config=_down_config())
    with pytest.raises(ConnectionError) as raised:
        limiter.hit(f"header:X-API-Key:{SECRET}")
    message = str(raised.value)
    assert SECRET not in message
    assert "flux:login:{…}:gcra" in message

    @rate_limit(requests=5, period=60, key=SECRET, config=_down_config())
    def work() -> str:
        return "done"

    with pytest.raises(ConnectionError) as raised:
        work()
    assert SECRET not in str(raised.value)


def test_the_outage_warning_says_what_each_limit_does(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The store fails open ([flux] fail_silently); the preset "login" fails closed.
    config = redis_config(
        f"redis://127.0.0.1:{free_port()}",
        limits={"login": LimitConfig(3, 60, fail_silently=False)},
        timeout_ms=100,
    )
    login = RateLimiter(config=config, name="login")
    api = RateLimiter(100, 60, name="api", config=config)
    with caplog.at_level("WARNING", logger="flux.redis"):
        for _ in range(3):
            assert api.hit("k").fail_open
        with pytest.raises(ConnectionError):
            login.hit("k")
    opened = [r.getMessage() for r in caplog.records if "circuit breaker open" in r.getMessage()]
    assert len(opened) == 1
    assert "hits pass (fail open), except those of login which fail (fail closed)" in opened[0]


def test_real_gunicorn_answers_503_and_never_prints_the_api_key(tmp_path: Path) -> None:
    pytest.importorskip("gunicorn")
    config = tmp_path / "flux.toml"
    config.write_text(
        f'[redis]\nurl = "redis://127.0.0.1:{free_port()}"\ntimeout_ms = 100\n\n'
        "[flux]\nfail_silently = false\nconsole_logging = true\n"
    )
    port = free_port()
    env = {**os.environ, "FLUX_CONFIG": str(config), "PYTHONPATH": f"{ROOT}:{HERE}"}
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}"),
            *("--log-level", "debug", "fail_closed_app:app"),
        ],
        cwd=HERE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(base + "/ping", process)
        replies = [
            httpx.get(base + "/", headers={"X-API-Key": SECRET, "Connection": "close"}, timeout=10)
            for _ in range(12)
        ]
        assert {r.status_code for r in replies} == {503}
        assert all(r.headers["Retry-After"] == "1" for r in replies)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
    text = output.decode(errors="replace")
    assert "Traceback" not in text
    assert SECRET not in text
    assert "circuit breaker open" in text  # the outage is logged, once per worker
