"""Shared by the analytics, monitor and clear tests: analytics configurations, and (from
tests/support/redis_server.py) a throwaway redis-server on a free loopback port and free ports.

tests/test_monitor.py and tests/test_clear.py put this directory on sys.path to import it, as
tests/integrations does for its apps.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from flux.config import AnalyticsConfig, FluxConfig, FluxSettings, RedisConfig

# One way to start a throwaway redis-server for every suite: tests/support/redis_server.py.
SUPPORT = Path(__file__).resolve().parent.parent / "support"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

from redis_server import RedisServer, free_port, redis_available  # noqa: E402

__all__ = ["RedisServer", "free_port", "make_config", "redis_available"]


def make_config(
    redis_url: str | None = None, *, hash_keys: bool = False, **options: Any
) -> FluxConfig:
    """Analytics enabled on a free port; the Redis store when ``redis_url`` is given."""
    options.setdefault("enabled", True)
    options.setdefault("port", free_port())
    return FluxConfig(
        redis=RedisConfig(url=redis_url) if redis_url else RedisConfig(),
        flux=FluxSettings(hash_keys=hash_keys),
        analytics=AnalyticsConfig(**options),
        storage="redis" if redis_url else "memory",
    )
