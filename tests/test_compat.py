"""flux-limiter 0.1.19 code runs unchanged on flux, and gets its bugs fixed.

Each test is written the way flux-limiter's README used its API: same imports, same names,
same call shapes. Where flux-limiter had a bug, the test says which and checks the fix.
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

# Django needs settings: the same ones as the framework tests, whichever runs first.
APPS = Path(__file__).parent / "integrations" / "apps"
if str(APPS) not in sys.path:
    sys.path.insert(0, str(APPS))
import django_site  # noqa: E402

django_site.setup()

from django.http import JsonResponse  # noqa: E402
from django.test import RequestFactory  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from flask import Flask, request  # noqa: E402

from flux import (  # noqa: E402
    ConnectionError,
    FluxConfig,
    FluxError,
    RateLimiter,
    RateLimitExceeded,
    RateLimitPolicy,
    RateLimitResult,
    create_limiter,
    get_config,
    load_config,
    rate_limit,
    reload_config,
)
from flux.decorators import limits_of  # noqa: E402
from flux.decorators import rate_limit as rate_limit_from_module  # noqa: E402
from flux.identity import generate_identity, get_ip  # noqa: E402
from flux.testing import manual_clock  # noqa: E402

TOML = """
[flux]
key_prefix = "myapp:"

[rate_limit]
policy = "gcra"
requests = 100
period = 60

[rate_limits.strict]
requests = 2
period = 60
policy = "token_bucket"
"""


@pytest.fixture(autouse=True)
def _fresh_limits() -> Any:
    with manual_clock() as clock:
        yield clock


@pytest.fixture
def config(tmp_path: Path) -> FluxConfig:
    path = tmp_path / "flux.toml"
    path.write_text(TOML)
    return load_config(path)


def test_the_public_names_are_there() -> None:
    import flux

    for name in (
        "rate_limit",
        "RateLimiter",
        "RateLimitResult",
        "RateLimitPolicy",
        "RateLimitExceeded",
        "FluxError",
        "ConnectionError",
        "FluxConfig",
        "load_config",
        "get_config",
        "reload_config",
        "create_limiter",
    ):
        assert name in flux.__all__, name
    assert rate_limit_from_module is rate_limit
    assert callable(get_config) and callable(reload_config)
    assert issubclass(RateLimitExceeded, FluxError) and issubclass(ConnectionError, FluxError)


def test_rate_limit_signature_is_a_superset() -> None:
    params = inspect.signature(rate_limit).parameters
    assert list(params)[:6] == ["name", "requests", "period", "burst", "policy", "key"]
    assert params["name"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    for keyword in ("requests", "period", "burst", "policy", "key"):
        assert params[keyword].kind is inspect.Parameter.KEYWORD_ONLY
        assert params[keyword].default is None


def test_readme_plain_limiter() -> None:
    limiter = RateLimiter(requests=100, period=60)
    result = limiter.hit("user:123")
    assert result.allowed
    # Bug 8: GCRA reported remaining = requests and reset_after = 1 as placeholders.
    assert result.remaining == 99
    assert result.reset_after == pytest.approx(0.6)
    assert limiter.hit("user:123", endpoint="/api").remaining == 98
    assert isinstance(result, RateLimitResult)
    assert create_limiter(requests=5, period=10).requests == 5


def test_readme_django_view(config: FluxConfig) -> None:
    @rate_limit(requests=5, period=60, config=config)
    def my_view(request: Any) -> JsonResponse:
        return JsonResponse({"message": "Hello!"})

    factory = RequestFactory()
    replies = [my_view(factory.get("/")) for _ in range(6)]
    assert [r.status_code for r in replies] == [200] * 5 + [429]
    denied = replies[-1]
    assert json.loads(denied.content) == {
        "error": "Too Many Requests",
        "retry_after": 12,
        "detail": "Rate limit exceeded. Try again in 12 seconds.",
    }
    assert denied["Retry-After"] == "12"
    assert denied["X-RateLimit-Remaining"] == "0"


def test_readme_fastapi_endpoint(config: FluxConfig) -> None:
    app = FastAPI()

    @app.get("/")
    @rate_limit(requests=10, period=60, config=config)
    async def root(request: Request) -> dict[str, str]:
        return {"message": "Hello World"}

    client = TestClient(app)
    assert [client.get("/").status_code for _ in range(11)] == [200] * 10 + [429]


def test_readme_flask_named_limit(config: FluxConfig) -> None:
    app = Flask(__name__)

    @app.route("/")
    @rate_limit(name="strict", config=config)
    def index() -> str:
        return "Hello"

    client = app.test_client()
    assert [client.get("/").status_code for _ in range(3)] == [200, 200, 429]


def test_custom_key_functions(config: FluxConfig) -> None:
    app = Flask(__name__)

    @app.route("/")
    @rate_limit(requests=1, period=60, key=lambda req: req.headers.get("X-API-Key"), config=config)
    def by_key() -> str:
        return "ok"

    @app.route("/shared")
    @rate_limit(requests=1, period=60, key=lambda: "everyone", config=config)
    def shared() -> str:
        return request.path

    client = app.test_client()
    assert client.get("/", headers={"X-API-Key": "a"}).status_code == 200
    assert client.get("/", headers={"X-API-Key": "a"}).status_code == 429
    assert client.get("/", headers={"X-API-Key": "b"}).status_code == 200
    assert client.get("/shared").status_code == 200
    assert client.get("/shared", environ_base={"REMOTE_ADDR": "192.0.2.9"}).status_code == 429


def test_plain_function_and_to_headers(config: FluxConfig) -> None:
    @rate_limit(requests=1, period=1.5, config=config)
    def job() -> str:
        return "ran"

    assert job() == "ran"
    with pytest.raises(RateLimitExceeded) as denied:
        job()
    # Bug 6: Retry-After was truncated (1.5 s -> "1": earlier than the real retry time).
    assert denied.value.to_headers()["Retry-After"] == "2"
    assert denied.value.to_headers()["X-RateLimit-Remaining"] == "0"
    assert RateLimitExceeded("k", 0.4).to_headers()["Retry-After"] == "1"


def test_policies_by_name(config: FluxConfig) -> None:
    # flux-limiter lower-cased policy names and called fixed windows "fcfs".
    assert rate_limit(requests=1, period=1, policy="GCRA", config=config).limiter.policy == "gcra"
    fixed = rate_limit(requests=1, period=1, policy=RateLimitPolicy.FIXED_WINDOW, config=config)
    assert fixed.limiter.policy == "fixed_window"
    assert rate_limit(requests=1, period=1, policy="fcfs", config=config).limiter.policy == (
        "fixed_window"
    )


def test_zero_and_unknown_values_are_errors_not_defaults(config: FluxConfig) -> None:
    # Bug 5: `requests or default` turned 0 into the default; bug 2: unknown policies -> GCRA.
    with pytest.raises(ValueError):
        rate_limit(requests=0, period=60, config=config)
    with pytest.raises(ValueError):
        rate_limit(requests=1, period=60, policy="nonsense", config=config)


def test_identity_helpers() -> None:
    starlette_like = SimpleNamespace(client=SimpleNamespace(host="192.0.2.1"), headers={})
    assert get_ip(starlette_like) == "192.0.2.1"
    flask_like = SimpleNamespace(remote_addr="192.0.2.2", headers={})
    assert get_ip(flask_like) == "192.0.2.2"
    django_like = SimpleNamespace(META={"REMOTE_ADDR": "192.0.2.3"}, headers={})
    assert get_ip(django_like) == "192.0.2.3"
    # Bug 11: X-Forwarded-For's first entry was believed whenever the client was unknown.
    spoofed = SimpleNamespace(headers={"X-Forwarded-For": "6.6.6.6"})
    assert get_ip(spoofed) == "0.0.0.0"
    assert generate_identity(starlette_like) == "ip:192.0.2.1"
    assert generate_identity(starlette_like, key_func=lambda r: "user-1") == "user-1"


def test_stacked_limits_no_longer_burn_each_other(config: FluxConfig) -> None:
    # flux-limiter ran stacked decorators one after the other: a request the inner limit
    # denied had already been counted by the outer one. flux checks them together.
    @rate_limit(requests=100, period=3600, config=config)
    @rate_limit(requests=1, period=60, config=config)
    def work() -> None:
        return None

    work()
    for _ in range(10):
        with pytest.raises(RateLimitExceeded):
            work()
    outer = limits_of(work)[0].limiter
    assert outer.name == f"{__name__}.{work.__qualname__}[100/3600s]"
    assert outer.peek("global").remaining == 99
