"""Analytics tests: a private redis-server, a clean analytics state around every test."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from analytics_support import RedisServer, redis_available  # noqa: E402

from flux import analytics  # noqa: E402
from flux.analytics import hooks  # noqa: E402


@pytest.fixture(autouse=True)
def clean_analytics() -> Iterator[None]:
    """No recorder, server or hook survives a test."""
    analytics.shutdown()
    hooks.clear()
    yield
    analytics.shutdown()
    hooks.clear()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the session (emptied before each test that uses it)."""
    if not redis_available():
        pytest.skip("redis-server is not installed (make redis-server)")
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The URL of an empty Redis."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Any]:
    """A redis-py client (str replies) on the empty Redis."""
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()
