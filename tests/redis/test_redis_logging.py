"""``[flux] console_logging`` and ``log_file`` are honoured, in a daemonised server too, and
the root logger is never configured.

Week-one fault: both keys attached no handler, so flux's warnings reached users only through
Python's last-resort handler, and under ``gunicorn --daemon`` (no stderr) not at all.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from http_server import wait_until_answers
from redis_server import free_port

from flux import FluxConfig, RateLimiter
from flux._logging import remove_log_handlers
from flux.config import FluxSettings

HERE = Path(__file__).parent
ROOT = HERE.parents[1]


def test_the_settings_add_handlers_to_flux_never_to_the_root_logger(tmp_path: Path) -> None:
    root_before = list(logging.getLogger().handlers)
    log = tmp_path / "flux.log"
    config = FluxConfig(flux=FluxSettings(console_logging=True, log_file=str(log)))
    try:
        RateLimiter(3, 60, config=config)
        assert logging.getLogger().handlers == root_before
        assert len(logging.getLogger("flux").handlers) == 2
    finally:
        remove_log_handlers()


def test_gunicorn_daemon_writes_the_outage_warning_to_log_file(tmp_path: Path) -> None:
    log, pid_file = tmp_path / "flux.log", tmp_path / "gunicorn.pid"
    config = tmp_path / "flux.toml"
    config.write_text(
        f'[redis]\nurl = "redis://127.0.0.1:{free_port()}"\ntimeout_ms = 100\n\n'
        f'[flux]\nlog_file = "{log}"\n'
    )
    port = free_port()
    env = {**os.environ, "FLUX_CONFIG": str(config), "PYTHONPATH": f"{ROOT}:{HERE}"}
    subprocess.run(
        [
            *(sys.executable, "-m", "gunicorn", "--daemon", "--pid", str(pid_file)),
            *("-w", "1", "-b", f"127.0.0.1:{port}", "--chdir", str(HERE), "fork_app:app"),
        ],
        env=env,
        check=True,
        timeout=30,
    )
    pid = None
    try:
        wait_until_answers(f"http://127.0.0.1:{port}/ping")
        pid = int(pid_file.read_text())
        replies = [httpx.get(f"http://127.0.0.1:{port}/", timeout=5) for _ in range(4)]
        assert {r.status_code for r in replies} == {200}  # fail open
        deadline = time.monotonic() + 10
        while "circuit breaker open" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, "no warning reached log_file"
            time.sleep(0.05)  # the record is written by the worker process
    finally:
        if pid is None and pid_file.exists():  # the daemon started but never answered
            pid = int(pid_file.read_text())
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)  # waiting for the daemon to exit
            else:
                os.kill(pid, signal.SIGKILL)
    assert log.read_text().count("circuit breaker open") == 1
