"""storage = "shared": the shared-memory store from flux.toml and $FLUX_STORAGE, shared exactly
by separate Python processes, with clear errors for bad settings and unusable regions."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from flux import RateLimiter, _flux, _shared
from flux import config as config_module
from flux.config import FluxConfig, FluxSettings, SharedConfig, load_config
from flux.exceptions import ConfigError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> None:
    """No flux variables, no cached configuration or regions."""
    for name in (config_module.CONFIG_ENV, config_module.REDIS_URL_ENV, config_module.STORAGE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(config_module, "_cached", None)
    _shared.clear_regions()


def shared_config(path: Path, max_keys: int | None = None, key_prefix: str = "flux:") -> FluxConfig:
    return FluxConfig(
        flux=FluxSettings(storage="shared", key_prefix=key_prefix),
        shared=SharedConfig(path=str(path), max_keys=max_keys),
    )


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "flux.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_storage_shared_and_its_section_come_from_flux_toml(tmp_path: Path) -> None:
    region = tmp_path / "region"
    path = write_toml(
        tmp_path,
        f"""
        [flux]
        storage = "shared"
        [shared]
        path = "{region}"
        max_keys = 1000
        """,
    )
    config = load_config(path)
    assert config.storage == "shared"
    assert config.shared == SharedConfig(path=str(region), max_keys=1000)
    limiter = RateLimiter(3, 60, config=config)
    assert limiter.storage == "shared"
    assert limiter.region is not None and limiter.region.path == region
    assert oct(region.stat().st_mode & 0o777) == "0o600"
    assert [limiter.hit("k").allowed for _ in range(4)] == [True, True, True, False]


def test_flux_storage_environment_variable_selects_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_toml(tmp_path, f'[shared]\npath = "{tmp_path / "env-region"}"\n')
    monkeypatch.setenv(config_module.STORAGE_ENV, "shared")
    assert load_config(path).storage == "shared"
    monkeypatch.setenv(config_module.STORAGE_ENV, "memory")
    assert load_config(path).storage == "memory"
    monkeypatch.setenv(config_module.STORAGE_ENV, "disk")
    with pytest.raises(ConfigError, match="FLUX_STORAGE"):
        load_config(path)


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("[shared]\nmax_keys = 0\n", "shared.max_keys"),
        ('[shared]\nmax_keys = "many"\n', "shared.max_keys"),
        ('[shared]\npath = ""\n', "shared.path"),
        ("[shared]\nsize = 3\n", "shared.size"),
    ],
)
def test_bad_shared_settings_are_config_errors(tmp_path: Path, table: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(write_toml(tmp_path, table))


def test_limiters_of_one_region_share_and_prefixes_keep_limits_apart(tmp_path: Path) -> None:
    config = shared_config(tmp_path / "region")
    first = RateLimiter(2, 60, config=config)
    second = RateLimiter(2, 60, config=config)
    assert first.region is second.region, "one mapping per process"
    assert first.hit("k").allowed and second.hit("k").allowed
    assert not first.hit("k").allowed
    other = RateLimiter(2, 60, config=shared_config(tmp_path / "region", key_prefix="app2:"))
    assert other.region is first.region
    assert other.hit("k").allowed, "another key_prefix is another limit"
    second.reset("k")
    assert first.peek("k").remaining == 2
    assert first.region is not None and first.region.stats()["live"] == 1


def test_unusable_regions_and_arguments_raise_clear_errors(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "region"
    with pytest.raises(OSError, match=str(missing)):
        RateLimiter(3, 60, config=shared_config(missing))
    foreign = tmp_path / "foreign"
    foreign.write_bytes(b"not a region" * 100)
    with pytest.raises(OSError, match="not a flux shared region"):
        RateLimiter(3, 60, config=shared_config(foreign))
    config = shared_config(tmp_path / "region")
    with pytest.raises(ValueError, match="sliding_log"):
        RateLimiter(3, 60, policy="sliding_log", config=config)
    with pytest.raises(ValueError, match="max_keys"):
        RateLimiter(3, 60, config=config, max_keys=10)
    memory = RateLimiter(3, 60, config=FluxConfig())
    shared = RateLimiter(3, 60, config=config)
    with pytest.raises(ValueError, match="shared store"):
        RateLimiter.hit_many([(memory, "k", 1), (shared, "k", 1)])


def test_several_limits_hit_at_once_on_the_shared_store(tmp_path: Path) -> None:
    config = shared_config(tmp_path / "region")
    burst = RateLimiter(2, 60, config=config)
    hourly = RateLimiter(10, 3600, config=shared_config(tmp_path / "region", key_prefix="h:"))
    for _ in range(2):
        assert all(r.allowed for r in RateLimiter.hit_many([(burst, "k", 1), (hourly, "k", 1)]))
    denied = RateLimiter.hit_many([(burst, "k", 1), (hourly, "k", 1)])
    assert [r.allowed for r in denied] == [False, True]
    assert hourly.peek("k").remaining == 8, "nothing taken from the limit that passed"


WORKER = """
import sys, time
from flux import RateLimiter
from flux.config import FluxConfig, FluxSettings, SharedConfig

config = FluxConfig(flux=FluxSettings(storage="shared"), shared=SharedConfig(path=sys.argv[1]))
limiter = RateLimiter(100, 3600, config=config)
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
print(sum(limiter.hit("one-key").allowed for _ in range(1000)))
"""


def test_two_python_processes_share_one_limit_exactly(tmp_path: Path) -> None:
    region = tmp_path / "region"
    start = time.time() + 1.0
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(region), str(start)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    allowed = []
    for worker in workers:
        out, _ = worker.communicate(timeout=60)
        assert worker.returncode == 0
        allowed.append(int(out))
    assert sum(allowed) == 100, allowed
    limiter = RateLimiter(100, 3600, config=shared_config(region))
    assert not limiter.hit("one-key").allowed


def test_default_path_is_per_user_and_per_key_prefix() -> None:
    path = Path(_flux.default_shared_path("flux:"))
    assert path.name == f"flux-{os.getuid()}-flux_"
    assert _shared.region_path(FluxConfig()) == path


def test_metrics_show_the_open_regions_evictions_included(tmp_path: Path) -> None:
    from flux.analytics import prometheus
    from flux.analytics.aggregate import Aggregate, Snapshot

    region = tmp_path / "region"
    limiter = RateLimiter(10, 3600, config=shared_config(region, max_keys=16))
    for i in range(100):
        limiter.hit(f"client-{i}")
    text = prometheus.render(Snapshot(source="memory", aggregate=Aggregate()))
    label = f'path="{region}"'
    assert f"flux_shared_slots{{{label}}} 32" in text
    assert f'flux_shared_keys{{{label},state="live"}} 32' in text
    assert f'flux_shared_keys{{{label},state="pending"}} 0' in text
    assert f"flux_shared_evictions_total{{{label}}} 68" in text
    parser = pytest.importorskip("prometheus_client.parser")
    names = {family.name for family in parser.text_string_to_metric_families(text)}
    assert {"flux_shared_slots", "flux_shared_keys", "flux_shared_evictions"} <= names


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_shares_its_parents_limits(tmp_path: Path) -> None:
    # The pre-fork model of gunicorn: the limiter is built before the fork, the workers hit.
    limiter = RateLimiter(10, 3600, config=shared_config(tmp_path / "region"))
    assert limiter.hit("k", cost=4).allowed
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        allowed = sum(limiter.hit("k").allowed for _ in range(10))
        os.write(write, str(allowed).encode())
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    assert int(os.read(read, 100)) == 6
    os.close(read)
    assert not limiter.hit("k").allowed
