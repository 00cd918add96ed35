"""Helpers shared by the Redis tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from flux import FluxConfig
from flux.config import FluxSettings, LimitConfig, RedisConfig


def redis_config(
    url: str,
    *,
    fail_silently: bool = True,
    key_prefix: str = "flux:",
    limits: dict[str, LimitConfig] | None = None,
    **redis: Any,
) -> FluxConfig:
    """A configuration with storage ``redis`` at ``url`` (and named ``limits``)."""
    return FluxConfig(
        redis=RedisConfig(url=url, **redis),
        flux=FluxSettings(fail_silently=fail_silently, key_prefix=key_prefix),
        rate_limits=limits or {},
        storage="redis",
    )


WORKER = Path(__file__).with_name("redis_worker.py")


class Worker:
    """A ``redis_worker.py`` process (see its doc), killed by :meth:`stop`."""

    def __init__(self, url: str, env: dict[str, str] | None = None) -> None:
        """Start the worker and wait until it has imported flux."""
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.ready_time = float(self.receive()["ready"])

    def send(self, request: dict[str, Any]) -> None:
        """Sends one request (answer with :meth:`receive`)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def receive(self) -> dict[str, Any]:
        """The next reply."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker exited with {self.proc.wait()}")
        return dict(json.loads(line))

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """Sends ``request`` and waits for its reply."""
        self.send(request)
        return self.receive()

    def stop(self) -> None:
        """Closes its input and kills it (by PID) if it has not exited."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
