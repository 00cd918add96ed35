"""flux.cli: init writes a template that loads back, check validates, lazy commands dispatch."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import flux
from flux import cli
from flux import config as config_module
from flux._template import TEMPLATE
from flux.config import (
    AnalyticsConfig,
    FluxSettings,
    LimitConfig,
    RateLimitPolicy,
    RedisConfig,
    load_config,
)

# Where the flux package under test lives, for subprocesses.
PACKAGE_ROOT = Path(next(iter(flux.__path__))).parent


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test runs in an empty directory without flux's environment variables."""
    for name in (config_module.CONFIG_ENV, config_module.REDIS_URL_ENV):
        monkeypatch.delenv(name, raising=False)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


# --- init ------------------------------------------------------------------------------------


def test_init_writes_flux_toml_in_the_current_directory(
    clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["init"]) == 0
    target = clean_env / "flux.toml"
    assert target.read_text(encoding="utf-8") == TEMPLATE
    assert str(target) in capsys.readouterr().out


def test_init_refuses_to_overwrite(clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = clean_env / "flux.toml"
    target.write_text("# mine\n", encoding="utf-8")
    assert cli.main(["init"]) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "--force" in err and "flux.toml" in err
    assert target.read_text(encoding="utf-8") == "# mine\n"


@pytest.mark.parametrize("flag", ["--force", "-f"])
def test_init_force_overwrites(clean_env: Path, flag: str) -> None:
    target = clean_env / "custom.toml"
    target.write_text("# mine\n", encoding="utf-8")
    assert cli.main(["init", "custom.toml", flag]) == 0
    assert target.read_text(encoding="utf-8") == TEMPLATE
    assert cli.main(["init", flag, "custom.toml"]) == 0


def test_init_creates_parent_directories(clean_env: Path) -> None:
    assert cli.main(["init", "config/flux.toml"]) == 0
    assert load_config().path == clean_env / "config" / "flux.toml"


def test_init_into_a_directory_is_refused(
    clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["init", str(clean_env)]) == 1
    assert "is a directory" in capsys.readouterr().err


# --- the template ----------------------------------------------------------------------------


def test_template_loads_back(clean_env: Path) -> None:
    assert cli.main(["init"]) == 0
    config = load_config()
    assert config.path == clean_env / "flux.toml"
    assert config.storage == "memory"  # [redis] is commented out: init must not need Redis
    assert config.flux == FluxSettings()
    assert config.analytics == AnalyticsConfig()
    assert config.rate_limit == LimitConfig()
    assert config.flux.jitter_enabled is False
    assert dict(config.rate_limits) == {
        "default": LimitConfig(100, 60, 100, RateLimitPolicy.GCRA),
        "strict": LimitConfig(5, 60, 5, RateLimitPolicy.TOKEN_BUCKET, limit="5/minute"),
        "high_throughput": LimitConfig(10000, 60, 10000, RateLimitPolicy.GCRA),
    }


def test_template_has_jitter_in_the_flux_section() -> None:
    # flux-limiter's template put jitter_* under [analytics] by mistake.
    flux_section = TEMPLATE.split("\n[flux]\n", 1)[1].split("\n[analytics]\n", 1)[0]
    assert "\njitter_enabled = false" in flux_section
    assert "\njitter_max_ms = 500" in flux_section


@pytest.mark.parametrize(
    ("section", "cls"),
    [
        ("redis", RedisConfig),
        ("flux", FluxSettings),
        ("analytics", AnalyticsConfig),
        ("rate_limit", LimitConfig),
    ],
)
def test_template_mentions_every_key(section: str, cls: type) -> None:
    assert re.search(rf"^(# )?\[{section}\]$", TEMPLATE, re.M)
    for f in dataclasses.fields(cls):
        assert re.search(rf"^#? *{f.name} = ", TEMPLATE, re.M), f"{section}.{f.name} missing"


def test_template_shows_the_defaults() -> None:
    # Every `key = value` line (commented or not) shows the built-in default, except the
    # examples that have no default (password, log_file, max_keys, storage, ipv6_prefix).
    examples = {
        "redis.password",
        "flux.log_file",
        "flux.max_keys",
        "flux.storage",
        "flux.ipv6_prefix",
        "rate_limit.fail_silently",
        "rate_limit.limit",
    }
    classes = {
        "redis": RedisConfig,
        "flux": FluxSettings,
        "analytics": AnalyticsConfig,
        "rate_limit": LimitConfig,
    }
    defaults = {
        f"{section}.{f.name}": f.default
        for section, cls in classes.items()
        for f in dataclasses.fields(cls)
    }
    defaults["rate_limit.burst"] = LimitConfig().burst
    section, checked = "", set()
    for line in TEMPLATE[: TEMPLATE.index("[rate_limits.")].splitlines():
        header = re.match(r"^#? ?\[([a-z_]+)\]$", line)
        if header:
            section = header.group(1)
        setting = re.match(r"^#? ?([a-z_]+) = (.*?)(?:[ \t]+#.*)?$", line)
        if not setting or f"{section}.{setting.group(1)}" in examples:
            continue
        key = f"{section}.{setting.group(1)}"
        expected = defaults[key]
        shown = config_module.tomllib.loads(f"v = {setting.group(2)}")["v"]
        assert shown == (list(expected) if isinstance(expected, tuple) else expected), key
        checked.add(key)
    assert checked == set(defaults) - examples - {"redis.url"}


def test_uncommented_template_still_loads(clean_env: Path) -> None:
    # Uncomment every `# key = value` example and the `# [redis]` header (but [rate_limit]'s
    # `limit`, which replaces the requests and period shown above it).
    text = re.sub(r"^# (\[redis\]|(?!limit )[a-z_]+ = )", r"\1", TEMPLATE, flags=re.M)
    target = clean_env / "flux.toml"
    target.write_text(text, encoding="utf-8")
    config = load_config(target)
    assert config.redis.password == "change-me"
    assert config.flux.log_file == "flux.log"
    assert config.flux.max_keys == 1_000_000
    assert config.storage == "memory"  # uncommented storage = "memory" wins over [redis]


# --- check -----------------------------------------------------------------------------------


def test_check_a_valid_file(clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["init"])
    capsys.readouterr()
    assert cli.main(["check"]) == 0
    out = capsys.readouterr().out
    assert f"config: {clean_env / 'flux.toml'}" in out
    assert "storage: memory" in out
    assert re.search(r"strict\s+token_bucket\s+5 per 60 s, burst 5", out)
    assert out.rstrip().endswith("OK")


def test_check_without_a_file_uses_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check"]) == 0
    out = capsys.readouterr().out
    assert "built-in defaults" in out and "storage: memory" in out


def test_check_an_invalid_file(clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = clean_env / "bad.toml"
    bad.write_text("[rate_limits.api]\nperiod = -1\n", encoding="utf-8")
    assert cli.main(["check", "bad.toml"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert str(bad) in captured.err
    assert "rate_limits.api.period" in captured.err and "expected" in captured.err


def test_check_a_missing_file(clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", "missing.toml"]) == 1
    assert "no such file" in capsys.readouterr().err


def test_check_honours_flux_config(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    other = clean_env / "elsewhere.toml"
    other.write_text('[flux]\nkey_prefix = "x:"\n', encoding="utf-8")
    monkeypatch.setenv("FLUX_CONFIG", str(other))
    assert cli.main(["check"]) == 0
    assert 'key_prefix "x:"' in capsys.readouterr().out


def test_check_shows_redis_without_the_password(
    clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing listens on these loopback ports: check prints the summary, then fails to reach
    # the cluster (exit 1), and the password appears nowhere.
    (clean_env / "flux.toml").write_text(
        '[redis]\nhost = "127.0.0.1"\npassword = "hunter2"\ntimeout_ms = 100\n'
        'cluster = ["127.0.0.1:1", "127.0.0.1:2"]\n'
        "[analytics]\nenabled = true\n",
        encoding="utf-8",
    )
    assert cli.main(["check"]) == 1
    out, err = capsys.readouterr()
    assert "storage: redis" in out
    assert "redis://:***@127.0.0.1:6379/0" in out
    assert "cluster 127.0.0.1:1, 127.0.0.1:2" in out
    assert "hunter2" not in out + err
    assert "analytics: on, port 4444" in out
    assert err.startswith("error: ")


# --- the command table -----------------------------------------------------------------------


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    for name in ("init", "check", "demo", "monitor", "serve", "clear"):
        assert name in out


def test_help_and_usage_errors_return_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    assert cli.main(["init", "--help"]) == 0
    assert cli.main(["bogus"]) == 2
    assert cli.main(["init", "--nope"]) == 2
    capsys.readouterr()


def test_missing_command_module_is_not_available(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(cli.COMMANDS, "later", cli.LazyCommand("flux._not_written_yet", "soon"))
    assert cli.main(["later", "--port", "1"]) == 1
    assert "later: not available yet" in capsys.readouterr().err


def write_module(directory: Path, name: str, body: str) -> None:
    (directory / f"{name}.py").write_text(body, encoding="utf-8")


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "plugins"
    directory.mkdir()
    monkeypatch.syspath_prepend(str(directory))
    return directory


def test_lazy_command_gets_the_rest_of_argv(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_module(
        plugin_dir,
        "fluxtest_cmd_ok",
        "seen = []\ndef main(argv):\n    seen.append(list(argv))\n    return 3\n",
    )
    monkeypatch.setitem(cli.COMMANDS, "fake", cli.LazyCommand("fluxtest_cmd_ok", "fake"))
    assert cli.main(["fake", "--port", "5", "-v"]) == 3
    assert sys.modules["fluxtest_cmd_ok"].seen == [["--port", "5", "-v"]]


def test_lazy_command_none_and_system_exit(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_module(plugin_dir, "fluxtest_cmd_none", "def main(argv):\n    return None\n")
    write_module(plugin_dir, "fluxtest_cmd_exit", "def main(argv):\n    raise SystemExit(4)\n")
    monkeypatch.setitem(cli.COMMANDS, "none", cli.LazyCommand("fluxtest_cmd_none", "x"))
    monkeypatch.setitem(cli.COMMANDS, "exit", cli.LazyCommand("fluxtest_cmd_exit", "x"))
    assert cli.main(["none"]) == 0
    assert cli.main(["exit"]) == 4


def test_lazy_command_with_a_missing_dependency(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_module(plugin_dir, "fluxtest_cmd_dep", "import fluxtest_no_such_package\n")
    command = cli.LazyCommand("fluxtest_cmd_dep", "x", extra="monitor")
    monkeypatch.setitem(cli.COMMANDS, "dep", command)
    assert cli.main(["dep"]) == 1
    err = capsys.readouterr().err
    assert "needs the Python package 'fluxtest_no_such_package'" in err
    assert "pip install 'flux-ratelimit[monitor]'" in err


def test_register_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "COMMANDS", dict(cli.COMMANDS))
    cli.register_command("extra", "somewhere.extra", "an extra command")
    assert cli.COMMANDS["extra"] == cli.LazyCommand("somewhere.extra", "an extra command")
    with pytest.raises(ValueError):
        cli.register_command("init", "x", "y")


def test_flux_commands_point_at_flux_modules() -> None:
    assert {"demo", "monitor", "serve", "clear"} <= set(cli.COMMANDS)
    assert all(c.module.startswith("flux.") for c in cli.COMMANDS.values())


# --- as a program ----------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["flux", "flux.cli"])
def test_python_dash_m(clean_env: Path, module: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_ROOT))
    run = subprocess.run(
        [sys.executable, "-m", module, "init", "sub/flux.toml"],
        cwd=clean_env,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert (clean_env / "sub" / "flux.toml").read_text(encoding="utf-8") == TEMPLATE
    again = subprocess.run(
        [sys.executable, "-m", module, "init", "sub/flux.toml"],
        cwd=clean_env,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 1
    assert "--force" in again.stderr


def test_version_names_the_distribution_and_the_version(capsys) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"flux-ratelimit {flux.__version__}"
