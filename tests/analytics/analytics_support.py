"""Shared by the analytics, monitor and clear tests: a throwaway redis-server on a free loopback
port (stopped by PID, never a shared Redis), free ports, and analytics configurations.

tests/test_monitor.py and tests/test_clear.py put this directory on sys.path to import it, as
tests/integrations does for its apps.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from flux.config import AnalyticsConfig, FluxConfig, FluxSettings, RedisConfig

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    """A TCP port nobody listens on at the moment, on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisProcess:
    """``redis-server`` started in a temporary directory, without persistence."""

    def __init__(self) -> None:
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server is not installed (make redis-server)")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.TemporaryDirectory(prefix="flux-redis-")
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir.name,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        """Kill the server by its PID and remove its directory."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        self._dir.cleanup()

    @property
    def directory(self) -> Path:
        """The server's working directory."""
        return Path(self._dir.name)


def make_config(
    redis_url: str | None = None, *, hash_keys: bool = False, **options: Any
) -> FluxConfig:
    """Analytics enabled on a free port; the Redis store when ``redis_url`` is given."""
    options.setdefault("enabled", True)
    options.setdefault("port", free_port())
    return FluxConfig(
        redis=RedisConfig(url=redis_url) if redis_url else RedisConfig(),
        flux=FluxSettings(hash_keys=hash_keys),
        analytics=AnalyticsConfig(**options),
        storage="redis" if redis_url else "memory",
    )
