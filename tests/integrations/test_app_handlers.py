"""A refused request answered by the application's own error handling (flux's headers kept):
Flask ``errorhandler``, FastAPI/Starlette ``exception_handler``, Django ``FLUX_ON_LIMITED``."""

from __future__ import annotations

from typing import Any

import pytest
from appconfig import CONFIG, PERIOD
from django.http import JsonResponse
from django.test import Client as DjangoClient
from django.test import override_settings
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from flask import Flask, jsonify

from flux import RateLimitExceeded, rate_limit


def once() -> Any:
    return rate_limit(requests=1, period=PERIOD, config=CONFIG)


def _assert_app_answer(status: int, body: Any, headers: Any) -> None:
    assert status == 429
    assert body == {"mine": True, "wait": PERIOD}
    assert headers["Retry-After"] == str(PERIOD)
    assert "RateLimit" in headers


def test_flask_errorhandler_answers_for_flux() -> None:
    app = Flask(__name__)

    @app.errorhandler(RateLimitExceeded)
    def mine(error: RateLimitExceeded) -> Any:
        return jsonify(mine=True, wait=error.retry_after_seconds), error.status_code

    @app.errorhandler(Exception)
    def catch_all(error: Exception) -> Any:  # the app's failures only: never a refusal
        return jsonify(failure=True), 500

    @app.get("/v")
    @once()
    def view() -> Any:
        return {"ok": True}

    client = app.test_client()
    assert client.get("/v").status_code == 200
    denied = client.get("/v")
    _assert_app_answer(denied.status_code, denied.json, denied.headers)


def test_flask_errorhandler_for_429_also_answers() -> None:
    app = Flask(__name__)
    app.register_error_handler(429, lambda e: ({"mine": True, "wait": int(e.retry_after)}, 429))

    @app.get("/v")
    @once()
    def view() -> Any:
        return {"ok": True}

    client = app.test_client()
    client.get("/v")
    denied = client.get("/v")
    _assert_app_answer(denied.status_code, denied.json, denied.headers)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_fastapi_exception_handler_answers_for_flux(asynchronous: bool) -> None:
    app = FastAPI()

    if asynchronous:

        @app.exception_handler(RateLimitExceeded)
        async def mine(request: Any, error: RateLimitExceeded) -> JSONResponse:
            return JSONResponse({"mine": True, "wait": error.retry_after_seconds}, 429)
    else:

        @app.exception_handler(RateLimitExceeded)
        def mine_sync(request: Any, error: RateLimitExceeded) -> JSONResponse:
            return JSONResponse({"mine": True, "wait": error.retry_after_seconds}, 429)

    @app.get("/sync")
    @once()
    def sync_view() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/async")
    @once()
    async def async_view() -> dict[str, bool]:
        return {"ok": True}

    client = TestClient(app)
    for path in ("/sync", "/async"):
        assert client.get(path).status_code == 200
        denied = client.get(path)
        _assert_app_answer(denied.status_code, denied.json(), denied.headers)


def test_fastapi_handler_applies_to_the_middleware_too() -> None:
    from flux.integrations.fastapi import FluxMiddleware

    app = FastAPI()
    app.add_middleware(FluxMiddleware, default="1/hour", config=CONFIG)

    @app.exception_handler(429)
    async def mine(request: Any, error: Any) -> JSONResponse:
        return JSONResponse({"mine": True, "wait": error.retry_after_seconds}, 429)

    @app.get("/open")
    def open_view() -> dict[str, bool]:
        return {"ok": True}

    client = TestClient(app)
    assert client.get("/open").status_code == 200
    denied = client.get("/open")
    _assert_app_answer(denied.status_code, denied.json(), denied.headers)


def limited_answer(request: Any, error: RateLimitExceeded) -> JsonResponse:
    """FLUX_ON_LIMITED of the Django test below (named by its dotted path)."""
    return JsonResponse({"mine": True, "wait": error.retry_after_seconds}, status=429)


def test_django_setting_answers_for_flux() -> None:
    with override_settings(FLUX_ON_LIMITED=f"{__name__}.limited_answer"):
        client = DjangoClient()
        assert client.get("/sync").status_code == 200
        for _ in range(2):
            client.get("/sync")
        denied = client.get("/sync")
        assert denied.status_code == 429
        assert denied.json() == {"mine": True, "wait": 1200}
        assert denied.headers["Retry-After"] == "1200"
        assert "RateLimit" in denied.headers
