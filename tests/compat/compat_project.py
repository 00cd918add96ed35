"""The project directory of the flux-limiter compatibility tests (fixtures in conftest.py).

A module of its own (not conftest) so the tests can import :class:`Project` by a name no other
test directory uses.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from redis_server import RedisServer

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
