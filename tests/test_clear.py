"""``python -m flux clear``: SCAN + UNLINK of flux's keys, and resetting one identity."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ANALYTICS_TESTS = Path(__file__).with_name("analytics")
if str(ANALYTICS_TESTS) not in sys.path:
    sys.path.insert(0, str(ANALYTICS_TESTS))

from analytics_support import RedisServer, free_port, redis_available  # noqa: E402

from flux import clear, cli  # noqa: E402
from flux.identity import hash_identity  # noqa: E402

LIMIT_KEYS = [
    "flux:login:{ip:10.0.0.1}:gcra",
    "flux:login:{ip:10.0.0.2}:gcra",
    "flux:api:{ip:10.0.0.1}:sliding_window",
    "flux:xlogin:{ip:10.0.0.1}:gcra",
]
ANALYTICS_KEYS = ["flux:events", "flux:events:counters", "flux:events:blocked:login"]
OTHER_KEYS = ["app:session:1", "fluxy", "flux"]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    if not redis_available():
        pytest.skip("redis-server is not installed (make redis-server)")
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushall()
    for key in LIMIT_KEYS + OTHER_KEYS:
        client.set(key, "1")
    client.xadd("flux:events", {"limit": "login"})
    client.hset("flux:events:counters", "x", 1)
    client.zadd("flux:events:blocked:login", {"ip:10.0.0.1": 3})
    yield client
    client.close()


@pytest.fixture
def url(redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(tmp_path)  # no ./flux.toml of the repository
    monkeypatch.delenv("FLUX_CONFIG", raising=False)
    monkeypatch.delenv("FLUX_REDIS_URL", raising=False)
    return redis_server.url


def _keys(client: Any) -> set[str]:
    return set(client.keys("*"))


def test_clear_deletes_every_flux_key_and_nothing_else(
    client: Any, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert clear.main(["--redis", url]) == 0
    assert _keys(client) == set(OTHER_KEYS)
    assert "deleted 7 keys under 'flux:'" in capsys.readouterr().out


def test_through_the_cli(client: Any, url: str) -> None:
    assert cli.main(["clear", "--redis", url, "--keep-analytics"]) == 0
    assert _keys(client) == set(OTHER_KEYS + ANALYTICS_KEYS)


def test_analytics_only(client: Any, url: str) -> None:
    assert clear.main(["--redis", url, "--analytics-only"]) == 0
    assert _keys(client) == set(OTHER_KEYS + LIMIT_KEYS)


def test_dry_run_lists_and_keeps(client: Any, url: str, capsys: pytest.CaptureFixture[str]) -> None:
    before = _keys(client)
    assert clear.main(["--redis", url, "--dry-run", "--keep-analytics"]) == 0
    assert _keys(client) == before
    out = capsys.readouterr().out
    assert set(out.splitlines()[:-1]) == set(LIMIT_KEYS)
    assert "4 keys under 'flux:' would be deleted (dry run)" in out


def test_prefix_from_the_command_line_and_the_config(client: Any, url: str, tmp_path: Path) -> None:
    assert clear.main(["--redis", url, "--prefix", "app:"]) == 0
    assert "app:session:1" not in _keys(client)
    (tmp_path / "flux.toml").write_text(f'[redis]\nurl = "{url}"\n\n[flux]\nkey_prefix = "fluxy"\n')
    assert clear.main(["--config", str(tmp_path / "flux.toml"), "--keep-analytics"]) == 0
    assert "fluxy" not in _keys(client) and "flux:login:{ip:10.0.0.1}:gcra" in _keys(client)


def test_many_keys_go_in_batches(client: Any, url: str) -> None:
    pipe = client.pipeline()
    for i in range(2500):
        pipe.set(f"flux:bulk:{{ip:{i}}}:gcra", 1)
    pipe.execute()
    assert clear.main(["--redis", url]) == 0
    assert _keys(client) == set(OTHER_KEYS)


def test_reset_one_identity_everywhere_or_under_one_limit(
    client: Any, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert clear.main(["--redis", url, "--identity", "10.0.0.1", "--limit", "login"]) == 0
    assert "flux:login:{ip:10.0.0.1}:gcra" not in _keys(client)
    assert {"flux:api:{ip:10.0.0.1}:sliding_window", "flux:xlogin:{ip:10.0.0.1}:gcra"} <= _keys(
        client
    )
    out = capsys.readouterr().out
    assert "deleted 1 key holding the state of '10.0.0.1' under 'login'" in out
    assert clear.main(["--redis", url, "--identity", "ip:10.0.0.1"]) == 0
    assert not any("10.0.0.1}" in key for key in _keys(client))
    assert "flux:login:{ip:10.0.0.2}:gcra" in _keys(client)
    assert "flux:events:blocked:login" in _keys(client)  # history stays
    assert clear.main(["--redis", url, "--identity", "ip:10.9.9.9"]) == 0
    assert "no keys holding the state of 'ip:10.9.9.9'" in capsys.readouterr().out


def test_reset_with_hashed_keys(client: Any, url: str, tmp_path: Path) -> None:
    digest = hash_identity("ip:192.0.2.7")
    client.set(f"flux:login:{{{digest}}}:gcra", 1)
    (tmp_path / "flux.toml").write_text(f'[redis]\nurl = "{url}"\n\n[flux]\nhash_keys = true\n')
    assert clear.main(["--config", str(tmp_path / "flux.toml"), "--identity", "192.0.2.7"]) == 0
    assert f"flux:login:{{{digest}}}:gcra" not in _keys(client)


def test_glob_characters_in_an_identity_are_literal(client: Any, url: str) -> None:
    client.set("flux:login:{a*}:gcra", 1)
    client.set("flux:login:{ab}:gcra", 1)
    keys = clear.reset_identity(client, "flux:", "a*")
    assert keys == ["flux:login:{a*}:gcra"]
    assert "flux:login:{ab}:gcra" in _keys(client)
    assert clear.glob_escape("a*b?[c]\\") == "a\\*b\\?\\[c\\]\\\\"


def test_an_empty_prefix_is_refused(
    client: Any, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert clear.main(["--redis", url, "--prefix", ""]) == 1
    assert "refusing an empty prefix" in capsys.readouterr().err
    assert "app:session:1" in _keys(client)


def test_the_embedded_store_has_nothing_to_clear(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert clear.main([]) == 1
    err = capsys.readouterr().err
    assert "embedded" in err and "RateLimiter.reset(key)" in err and "--redis" in err


def test_unreachable_redis_is_reported(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    dead = f"redis://:secret@127.0.0.1:{free_port()}/0"
    assert clear.main(["--redis", dead]) == 1
    err = capsys.readouterr().err
    assert "error: Redis at redis://:***@127.0.0.1" in err and "secret" not in err


def test_limit_needs_identity(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["clear", "--limit", "login"]) == 2
    assert "--limit goes with --identity" in capsys.readouterr().err


# --- the shared-memory store -----------------------------------------------------------------


def _shared_toml(tmp_path: Path) -> tuple[Path, Path]:
    region = tmp_path / "region"
    toml = tmp_path / "flux.toml"
    toml.write_text(f'[flux]\nstorage = "shared"\n\n[shared]\npath = "{region}"\n')
    return toml, region


def test_shared_clear_puts_every_key_back_for_every_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import subprocess

    from flux import FluxConfig, RateLimiter, load_config

    toml, region = _shared_toml(tmp_path)
    # Nothing there yet: the region is not created by clearing it.
    assert clear.main(["--config", str(toml)]) == 0
    assert "no shared region" in capsys.readouterr().out
    assert not region.exists()

    config: FluxConfig = load_config(str(toml))
    login = RateLimiter(2, 3600, name="login", config=config)
    for key in ("ip:10.0.0.1", "ip:10.0.0.2"):
        login.hit(key, cost=2)
        assert not login.hit(key).allowed
    assert clear.main(["--config", str(toml), "--dry-run"]) == 0
    assert "2 keys in the shared region" in capsys.readouterr().out
    assert not login.hit("ip:10.0.0.1").allowed  # a dry run changes nothing

    # Another process (the CLI, as an operator runs it) clears what this one holds.
    done = subprocess.run(
        [sys.executable, "-m", "flux", "clear", "--config", str(toml)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f"cleared 2 keys in the shared region at {region}" in done.stdout
    assert login.hit("ip:10.0.0.1").remaining == 1
    assert login.peek("ip:10.0.0.2").remaining == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--identity", "ip:10.0.0.1"], "cannot be found by name"),
        (["--analytics-only"], "cannot be deleted"),
    ],
)
def test_shared_clear_refuses_what_it_cannot_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    toml, region = _shared_toml(tmp_path)
    assert clear.main(["--config", str(toml), *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and str(region) in err


def test_shared_clear_reports_a_file_that_is_not_a_region(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml, region = _shared_toml(tmp_path)
    region.write_bytes(b"not a region" * 100)
    region.chmod(0o600)
    assert clear.main(["--config", str(toml)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(region) in err
