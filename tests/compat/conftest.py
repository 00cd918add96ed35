"""flux-limiter 0.1.19 users' projects, run on flux: the fixtures.

``project`` is a fresh project directory (the test's current directory) holding the flux.toml
such a user wrote, once per store: without ``[redis]`` (flux's embedded store) and with a
``[redis]`` section naming a redis-server of our own (started here, killed by PID). The
process-wide configuration and Redis stores are forgotten around each test, as in a new process.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SUPPORT = Path(__file__).parents[1] / "support"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

from compat_project import FLUX_TOML, Project  # noqa: E402  (needs the path above)
from redis_server import RedisServer, redis_available  # noqa: E402

from flux import config as config_module  # noqa: E402
from flux._redis import clear_stores  # noqa: E402


@pytest.fixture(scope="session")
def redis_session() -> Iterator[RedisServer]:
    """One redis-server for the session (skips where redis-server is not installed)."""
    if not redis_available():  # pragma: no cover - `make test-python` installs redis-server
        pytest.skip("redis-server is not installed (make redis-server)")
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["memory", "redis"])
def project(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Project]:
    """A flux-limiter project directory, current for the test, on each store in turn."""
    for name in (config_module.CONFIG_ENV, config_module.REDIS_URL_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(config_module, "_cached", None)
    monkeypatch.chdir(tmp_path)
    server: RedisServer | None = None
    redis = ""
    if request.param == "redis":
        server = request.getfixturevalue("redis_session")
        server.command("FLUSHALL")
        server.command("SCRIPT", "FLUSH")
        redis = f'[redis]\nhost = "127.0.0.1"\nport = {server.port}\npool_size = 5\n'
    (tmp_path / "flux.toml").write_text(FLUX_TOML.format(redis=redis), encoding="utf-8")
    yield Project(tmp_path, request.param, server)
    clear_stores()


@pytest.fixture
def fresh_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No flux.toml, no flux variables, nothing cached: flux's built-in defaults."""
    for name in (config_module.CONFIG_ENV, config_module.REDIS_URL_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(config_module, "_cached", None)
    monkeypatch.chdir(tmp_path)
