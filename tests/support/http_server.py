"""Waiting for a server process of a test to answer on loopback.

Plain module (no package): test suites put ``tests/support`` on ``sys.path``.
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

import httpx

__all__ = ["wait_until_answers"]


def wait_until_answers(
    url: str, process: subprocess.Popen[Any] | None = None, timeout: float = 30.0
) -> None:
    """Return once ``GET url`` answers 200; fail if ``process`` exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            output = process.communicate()[0] if process.stdout else b""
            text = output.decode(errors="replace") if isinstance(output, bytes) else output
            raise AssertionError(f"the server exited with {process.returncode}:\n{text}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer within {timeout:g} s")
        time.sleep(0.05)  # waiting for the process to listen, not for a rate limit
