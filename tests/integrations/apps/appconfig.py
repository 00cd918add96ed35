"""What the test applications share: their flux.toml, quotas and middleware options."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from flux import load_config

CONFIG = load_config(Path(__file__).with_name("flux.toml"))

QUOTA = 3  # most limited views: 3 per PERIOD
PERIOD = 3600  # long enough that no test ever sees a refill without moving a manual clock
BURST_QUOTA = 10  # the view hammered by concurrent clients under a real server
PARK_QUOTA = 5  # the async view whose allowed requests wait for /release
NAMED = "api_tier_1"  # 4 per hour in flux.toml
ALGO_QUOTA = 3
ALGO_PERIOD = 60

# The global limits every framework's middleware test uses.
MIDDLEWARE = {
    "default": "global_test",  # 6 per hour
    "paths": {"/api/": NAMED},
    "exempt_paths": ["/ping"],
    "exempt_methods": ["OPTIONS"],
}
GLOBAL_QUOTA = 6

# Views on these configs check jitter and headers_on_success in every framework.
JITTER_MAX_MS = 500
JITTER_CONFIG = replace(
    CONFIG, flux=replace(CONFIG.flux, jitter_enabled=True, jitter_max_ms=JITTER_MAX_MS)
)
QUIET_CONFIG = replace(CONFIG, flux=replace(CONFIG.flux, headers_on_success=False))

# --- per-request policies (the same in every framework; requests and responses are read
# through what all of them share: .headers and .status_code) ---
RATES = "2/hour; 3/day"  # the rate-string view: two quotas checked together
PLANS = {"free": "2/hour", "pro": "pro_tier", "internal": None}  # pro_tier: 4/hour
CUSTOM_BODY = {"custom": True}
EXEMPT_NETWORK = "203.0.113.0/24"
EXEMPT_CONFIG = replace(CONFIG, flux=replace(CONFIG.flux, exempt_ips=[EXEMPT_NETWORK]))


def plan_of(request: Any) -> str | None:
    """The limit of the request's plan (X-Plan header; none: free)."""
    return PLANS[request.headers.get("X-Plan", "free")]


def internal(request: Any) -> bool:
    """Exempt: requests marked internal."""
    return request.headers.get("X-Internal") == "yes"


def failed(response: Any) -> bool:
    """deduct_when: only failed responses count."""
    return int(response.status_code) >= 400


def password_ok(request: Any) -> bool:
    """The login view's check."""
    return request.headers.get("X-Password") == "right"


def algorithms_of(config: Any) -> list[str]:
    """The algorithms the test apps declare a view for on ``config``'s store (a shared region
    holds no sliding_log)."""
    from flux._flux import ALGORITHMS

    return [a for a in ALGORITHMS if not (config.storage == "shared" and a == "sliding_log")]


def _unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: Where the Redis of Django's policy views on Redis listens (the test starts it there).
REDIS_PORT = _unused_port()


def _redis_config() -> Any:
    from flux import FluxConfig
    from flux.config import RedisConfig

    return FluxConfig(
        redis=RedisConfig(url=f"redis://127.0.0.1:{REDIS_PORT}"),
        flux=CONFIG.flux,
        rate_limit=CONFIG.rate_limit,
        rate_limits=dict(CONFIG.rate_limits),
        storage="redis",
    )


REDIS_CONFIG = _redis_config()
