"""flux: a fast, correct rate limiter with a Rust core.

>>> from flux import RateLimiter
>>> limiter = RateLimiter(5, 10)          # 5 requests per 10 seconds, GCRA, in memory
>>> limiter.hit("client-1").allowed
True
"""

from __future__ import annotations

from flux._flux import __version__
from flux._redis import preload_scripts
from flux.config import (
    FluxConfig,
    RateLimitPolicy,
    get_config,
    load_config,
    reload_config,
)
from flux.decorators import RateLimit, rate_limit
from flux.exceptions import ConfigError, ConnectionError, FluxError, RateLimitExceeded
from flux.limiter import ManualClock, RateLimiter, RateLimitResult, create_limiter
from flux.redis_client import RedisClient

__all__ = [
    "ConfigError",
    "ConnectionError",
    "FluxConfig",
    "FluxError",
    "ManualClock",
    "RateLimit",
    "RateLimitExceeded",
    "RateLimitPolicy",
    "RateLimitResult",
    "RateLimiter",
    "RedisClient",
    "__version__",
    "create_limiter",
    "get_config",
    "load_config",
    "preload_scripts",
    "rate_limit",
    "reload_config",
]
