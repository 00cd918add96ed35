"""Redis store tests: a redis-server of our own (free loopback port, killed by PID at the end).

``redis`` is one server for the whole session, flushed before each test; tests that kill,
freeze or reconfigure a server start their own with ``make_server``. The shared stores of
``RateLimiter`` are forgotten after each test, so no breaker state leaks between tests.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SUPPORT = Path(__file__).parents[1] / "support"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

from redis_server import RedisServer, redis_available  # noqa: E402  (needs the path above)

from flux._redis import clear_stores  # noqa: E402

if not redis_available():  # pragma: no cover - `make test-python` installs redis-server
    pytest.skip("redis-server is not installed (make redis-server)", allow_module_level=True)


@pytest.fixture(scope="session")
def redis_session() -> Iterator[RedisServer]:
    """One redis-server for the session."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def redis(redis_session: RedisServer) -> RedisServer:
    """The session's server, emptied (FLUSHALL) and with its script cache flushed."""
    redis_session.command("FLUSHALL")
    return redis_session


@pytest.fixture
def make_server() -> Iterator[Callable[..., RedisServer]]:
    """Starts servers of the test's own (extra redis-server arguments); all killed after it."""
    servers: list[RedisServer] = []

    def make(*extra: str) -> RedisServer:
        server = RedisServer(*extra).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture(autouse=True)
def _fresh_shared_stores() -> Iterator[None]:
    yield
    clear_stores()
