"""``python -m flux monitor``: one frame, Redis directly, nothing reachable, and live in tmux."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ANALYTICS_TESTS = Path(__file__).with_name("analytics")
if str(ANALYTICS_TESTS) not in sys.path:
    sys.path.insert(0, str(ANALYTICS_TESTS))

from analytics_support import RedisServer, free_port, make_config, redis_available  # noqa: E402

from flux import RateLimiter, RateLimitResult, analytics, monitor  # noqa: E402
from flux.analytics import hooks  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TMUX = shutil.which("tmux")


@pytest.fixture(autouse=True)
def clean_analytics() -> Iterator[None]:
    analytics.shutdown()
    hooks.clear()
    yield
    analytics.shutdown()


@pytest.fixture
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wide console for rich, so that no column is cut."""
    monkeypatch.setenv("COLUMNS", "140")
    monkeypatch.delenv("FLUX_MONITOR_PORT", raising=False)
    monkeypatch.delenv("FLUX_CONFIG", raising=False)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    if not redis_available():
        pytest.skip("redis-server is not installed (make redis-server)")
    server = RedisServer().start()
    yield server.url
    server.stop()


def _traffic(limiter: RateLimiter, n: int, endpoint: str = "/login") -> None:
    for i in range(n):
        identity = f"ip:10.0.0.{i % 4}"
        analytics.record("login", endpoint, limiter.hit(identity), 2e-5, identity)


def test_once_prints_totals_limits_and_blocked_identities(
    wide: None, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = make_config()
    analytics.configure(config)
    _traffic(RateLimiter(3, 60), 40)
    assert monitor.main(["--port", str(config.analytics.port), "--once"]) == 0
    out = capsys.readouterr().out
    assert "decisions 40" in out and "allowed 12" in out and "blocked 28" in out
    assert "block rate 70.0%" in out
    line = next(line for line in out.splitlines() if "/login" in line and "login " in line)
    assert line.split()[:6] == ["login", "/login", "12", "28", "70.0%", "3"]
    assert "ip:10.0.0.3" in out and "Recent blocks" in out
    assert "Ctrl-C" not in out


def test_flux_monitor_port_variable_is_honoured(
    wide: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    config = make_config()
    analytics.configure(config)
    monkeypatch.setenv("FLUX_MONITOR_PORT", str(config.analytics.port))
    assert monitor.main(["--once"]) == 0
    assert "no decisions recorded yet" in capsys.readouterr().out


def test_nothing_reachable_is_a_clear_error(
    wide: None, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    port = free_port()
    assert monitor.main(["--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert "nothing to monitor" in err
    assert f"http://127.0.0.1:{port}/metrics.json" in err and "refused" in err
    assert "python -m flux serve" in err and "--redis" in err
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    assert monitor.main(["--redis", dead_redis]) == 1
    assert dead_redis in capsys.readouterr().err


def test_reads_redis_directly_and_falls_back_to_it(
    wide: None,
    capsys: pytest.CaptureFixture[str],
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import redis

    redis.Redis.from_url(redis_url).flushall()
    analytics.configure(make_config(redis_url), serve=False)
    for _ in range(7):
        analytics.record("api", "/v1", RateLimitResult(False, limit=2), 1e-4, "user:9")
    analytics.flush()
    monkeypatch.chdir(tmp_path)
    assert monitor.main(["--redis", redis_url, "--once"]) == 0
    out = capsys.readouterr().out
    assert "decisions 7" in out and "user:9" in out and "all workers" in out
    # No server, but flux.toml names a Redis store: the monitor reads it instead.
    (tmp_path / "flux.toml").write_text(
        f'[redis]\nurl = "{redis_url}"\n\n[analytics]\nport = {free_port()}\n'
    )
    assert monitor.main(["--once"]) == 0
    assert "decisions 7" in capsys.readouterr().out


def test_falls_back_to_the_shared_region_named_in_flux_toml(
    wide: None, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flux.config import FluxConfig, SharedConfig

    region = tmp_path / "region"
    config = FluxConfig(storage="shared", shared=SharedConfig(path=str(region)))
    analytics.configure(config, enabled=True, serve=False)
    for _ in range(5):
        analytics.record("api", "/v1", RateLimitResult(False, limit=2), 1e-4, "user:7")
    analytics.flush()
    monkeypatch.chdir(tmp_path)
    # No server answers, but flux.toml names the region: the monitor reads its analytics file.
    (tmp_path / "flux.toml").write_text(
        f'[flux]\nstorage = "shared"\n\n[shared]\npath = "{region}"\n\n'
        f"[analytics]\nport = {free_port()}\n"
    )
    assert monitor.main(["--once"]) == 0
    out = capsys.readouterr().out
    assert "decisions 5" in out and "user:7" in out and "all workers" in out


def _capture(socket_name: str) -> str:
    assert TMUX is not None
    return subprocess.run(
        [TMUX, "-L", socket_name, "capture-pane", "-p", "-t", "monitor"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def _wait_for(socket_name: str, *needles: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = _capture(socket_name)
        if all(needle in screen for needle in needles):
            return screen
        time.sleep(0.1)
    raise AssertionError(f"{needles} never appeared; screen:\n{screen}")


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)")
def test_live_view_in_tmux_updates_and_quits_on_ctrl_c(tmp_path: Path) -> None:
    assert TMUX is not None
    config = make_config()
    analytics.configure(config)
    limiter = RateLimiter(3, 60)
    _traffic(limiter, 40)
    socket_name = f"flux-monitor-test-{os.getpid()}"
    command = (
        f"cd {tmp_path} && PYTHONPATH={ROOT} {sys.executable} -m flux monitor "
        f"--port {config.analytics.port} --interval 0.2; echo EXIT=$?; sleep 30"
    )
    tmux = [TMUX, "-L", socket_name, "-f", os.devnull]
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", "monitor", "-x", "140", "-y", "45", command],
        check=True,
        env={k: v for k, v in os.environ.items() if k not in ("TMUX", "FLUX_CONFIG")},
    )
    try:
        screen = _wait_for(socket_name, "decisions 40", "ip:10.0.0.3", "Ctrl-C to quit")
        assert "blocked 28" in screen and "live" in screen
        _traffic(limiter, 60, "/signup")
        screen = _wait_for(socket_name, "decisions 100", "/signup")
        assert re.search(r"│ rate [\d.,]+/s ", screen), screen  # a measured rate
        subprocess.run([*tmux, "send-keys", "-t", "monitor", "C-c"], check=True)
        screen = _wait_for(socket_name, "EXIT=0")
        assert "Traceback" not in screen and "KeyboardInterrupt" not in screen
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
