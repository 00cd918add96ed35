"""The Flask application of the tests: in process (test_client) and under waitress."""

from __future__ import annotations

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
from flask import Blueprint, Flask, g, jsonify, request

from flux import FluxConfig, rate_limit
from flux.integrations.flask import FluxLimiter


class User:
    """A logged-in user, as an auth extension would put on ``g``."""

    is_authenticated = True

    def __init__(self, name: str) -> None:
        self.id = name


def create_app(config: FluxConfig = CONFIG, middleware: dict[str, Any] | None = None) -> Flask:
    """A fresh application (fresh limiters), with the FluxLimiter extension when asked."""
    app = Flask(__name__)

    def limited(**kwargs: Any) -> Any:
        kwargs.setdefault("requests", QUOTA)
        kwargs.setdefault("period", PERIOD)
        return rate_limit(config=config, **kwargs)

    @app.before_request
    def authenticate() -> None:
        name = request.headers.get("X-User")
        if name:
            g.user = User(name)

    if middleware is not None:
        FluxLimiter(app, config=config, **middleware)

    @app.get("/ping")
    def ping() -> Any:
        return {"ok": True}

    @app.get("/open")
    def open_view() -> Any:
        return {"open": True}

    @app.get("/api/thing")
    def api_thing() -> Any:
        return {"api": True}

    @app.get("/sync")
    @limited()
    def sync_view() -> Any:
        return {"view": "sync"}

    @app.get("/async")
    @limited()
    async def async_view() -> Any:
        return {"view": "async"}

    @app.get("/tuple")
    @limited()
    def tuple_view() -> Any:
        return "created", 201, {"X-Own": "kept"}

    @app.get("/items/<int:item_id>")
    @limited()
    def item(item_id: int) -> Any:
        return jsonify(id=item_id)

    @app.get("/stacked")
    @limited(requests=2)
    @limited(requests=5, period=PERIOD * 24)
    def stacked() -> Any:
        return {"view": "stacked"}

    @app.get("/named")
    @rate_limit(NAMED, config=config)
    def named() -> Any:
        return {"view": "named"}

    @app.get("/user")
    @limited(key="user")
    def user() -> Any:
        return {"view": "user"}

    @app.get("/apikey")
    @limited(key="header:X-API-Key")
    def apikey() -> Any:
        return "plain text"

    @app.route("/post-only", methods=["GET", "POST"])
    @limited(requests=1, methods=["POST"])
    def post_only() -> Any:
        return {"view": "post-only"}

    @app.get("/burst")
    @limited(requests=BURST_QUOTA)
    def burst() -> Any:
        return {"view": "burst"}

    @app.get("/burst-async")
    @limited(requests=BURST_QUOTA)
    async def burst_async() -> Any:
        return {"view": "burst-async"}

    @app.get("/jitter")
    @rate_limit(requests=1, period=PERIOD, config=JITTER_CONFIG)
    def jitter() -> Any:
        return {"view": "jitter"}

    @app.get("/quiet")
    @rate_limit(requests=1, period=PERIOD, config=QUIET_CONFIG)
    def quiet() -> Any:
        return {"view": "quiet"}

    @app.get("/rates")
    @rate_limit(RATES, config=config)
    def rates() -> Any:
        return {"view": "rates"}

    @app.get("/plan")
    @rate_limit(limit=plan_of, key="header:X-User", config=config)
    def plan() -> Any:
        return {"view": "plan"}

    @app.get("/internal")
    @limited(exempt_when=internal)
    def internal_view() -> Any:
        return {"view": "internal"}

    @app.get("/login")
    @limited(deduct_when=failed)
    def login() -> Any:
        return ({"login": True}, 200) if password_ok(request) else ({"login": False}, 401)

    @app.get("/custom")
    @limited(requests=1, on_limited=lambda req, result: (CUSTOM_BODY, 429))
    def custom() -> Any:
        return {"view": "custom"}

    @app.get("/exempt-ip")
    @rate_limit(requests=1, period=PERIOD, config=EXEMPT_CONFIG)
    def exempt_ip() -> Any:
        return {"view": "exempt-ip"}

    blueprint = Blueprint("bp", __name__, url_prefix="/bp")

    @blueprint.get("/limited")
    @limited()
    def bp_limited() -> Any:
        return {"view": "blueprint"}

    app.register_blueprint(blueprint)

    for policy in algorithms_of(config):

        def algorithm(policy: str = policy) -> Any:
            return {"policy": policy}

        algorithm.__name__ = algorithm.__qualname__ = f"algo_{policy}"
        limit = rate_limit(requests=ALGO_QUOTA, period=ALGO_PERIOD, policy=policy, config=config)
        app.add_url_rule(f"/algo/{policy}", view_func=limit(algorithm))
    return app


app = create_app()
