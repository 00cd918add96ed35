"""flux-limiter 0.1.19 users' projects, run on flux: the fixtures.

``project`` is a fresh project directory (the test's current directory) holding the flux.toml
such a user wrote, once per store: without ``[redis]`` (flux's embedded store) and with a
``[redis]`` section naming a redis-server of our own (started here, killed by PID). The
process-wide configuration and Redis stores are forgotten around each test, as in a new process.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

SUPPORT = Path(__file__).parents[1] / "support"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

from redis_server import RedisServer, redis_available  # noqa: E402  (needs the path above)

from flux import config as config_module  # noqa: E402
from flux._redis import clear_stores  # noqa: E402

# A flux.toml as flux-limiter's README wrote it; {redis} is the [redis] section or nothing.
FLUX_TOML = """\
{redis}
[flux]
key_prefix = "compat:"
fail_silently = true
console_logging = false
jitter_enabled = false

[rate_limit]
policy = "gcra"
requests = 100
period = 60

[rate_limits.strict]
requests = 2
period = 60
policy = "token_bucket"
"""


@dataclass
class Project:
    """A project directory on one store; ``server`` is the Redis it uses (``None``: embedded)."""

    dir: Path
    store: str
    server: RedisServer | None

    @property
    def toml(self) -> Path:
        """The project's flux.toml."""
        return self.dir / "flux.toml"

    def load(self, name: str, source: str) -> ModuleType:
        """Write ``<name>.py`` into the project and import it, as the application would."""
        path = self.dir / f"{name}.py"
        path.write_text(source, encoding="utf-8")
        spec = importlib.util.spec_from_file_location(f"compat_{name}_{id(self)}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    def redis_keys(self) -> list[str]:
        """Every key in the project's Redis (empty on the embedded store)."""
        if self.server is None:
            return []
        return sorted(str(key) for key in self.server.command("KEYS", "*"))


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
