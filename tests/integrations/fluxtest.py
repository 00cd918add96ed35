"""Helpers shared by the framework tests: expected headers, real servers, concurrent clients."""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from flux import FluxConfig, ManualClock, RateLimiter, RateLimitResult

APPS = Path(__file__).with_name("apps")
VENV_BIN = Path(sys.executable).parent
SERVER_START_TIMEOUT = 20.0
TRUSTED_PROXY = "127.0.0.2"  # in apps/flux.toml's trusted_proxies
RATE_HEADERS = (
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "RateLimit-Policy",
    "RateLimit",
)


def twin(policy: str, requests: int, period: float, clock: ManualClock) -> RateLimiter:
    """A limiter that takes the same decisions as a decorated view on the same clock."""
    return RateLimiter(requests, period, policy=policy, config=FluxConfig(), clock=clock)


def expected_headers(name: str, period: float, result: RateLimitResult) -> dict[str, str]:
    """Every header for one decision, computed here from the README's "Web frameworks" (not
    by flux.headers)."""
    headers = {
        "X-RateLimit-Limit": str(result.limit),
        "X-RateLimit-Remaining": str(result.remaining),
        "X-RateLimit-Reset": str(math.ceil(result.reset_after - 1e-9)),
        "RateLimit-Policy": f'"{name}";q={result.limit};w={math.ceil(period)}',
        "RateLimit": f'"{name}";r={result.remaining};t={math.ceil(result.reset_after - 1e-9)}',
    }
    if not result.allowed:
        headers["Retry-After"] = str(max(1, math.ceil(result.retry_after - 1e-9)))
    return headers


def rate_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The rate-limit headers of a response (case-insensitive lookup, canonical names)."""
    lower = {k.lower(): v for k, v in headers.items()}
    found = {name: lower[name.lower()] for name in RATE_HEADERS if name.lower() in lower}
    if "retry-after" in lower:
        found["Retry-After"] = lower["retry-after"]
    return found


def assert_denied_body(body: Mapping[str, Any], headers: Mapping[str, str]) -> None:
    """The 429 JSON body of the README's "Web frameworks": the same wait as Retry-After."""
    wait = int(rate_headers(headers)["Retry-After"])
    assert body == {
        "error": "Too Many Requests",
        "retry_after": wait,
        "detail": f"Rate limit exceeded. Try again in {wait} seconds.",
    }


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def server(argv: Sequence[str], port: int, health: str = "/ping") -> Iterator[str]:
    """Run a server process from the test apps directory; yields its base URL.

    Waits until ``health`` answers; always kills the process, whatever happens.
    """
    env = {**os.environ, "PYTHONPATH": str(APPS), "PYTHONUNBUFFERED": "1"}
    env.pop("FLUX_CONFIG", None)
    process = subprocess.Popen(
        list(argv),
        cwd=APPS,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if process.poll() is not None:
                output = process.stdout.read().decode(errors="replace") if process.stdout else ""
                raise RuntimeError(f"server exited with {process.returncode}:\n{output}")
            try:
                if httpx.get(base + health, timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server on port {port} did not answer in time")
            time.sleep(0.05)  # waiting for the process to listen, not for a rate limit
        yield base
    finally:
        # The whole process group: gunicorn's worker dies with its master, not after it.
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        if process.stdout:
            process.stdout.close()


def concurrent_gets(
    url: str,
    count: int,
    *,
    threads: int = 8,
    headers: Sequence[Mapping[str, str]] | None = None,
    local_address: str | None = None,
) -> list[httpx.Response]:
    """``count`` GETs of ``url`` from ``threads`` concurrent clients, each on its connection."""
    barrier = threading.Barrier(threads)

    def worker(first: int) -> list[httpx.Response]:
        transport = httpx.HTTPTransport(local_address=local_address)
        with httpx.Client(transport=transport, timeout=30) as client:
            barrier.wait()  # start together, so requests really overlap
            return [
                client.get(url, headers=dict(headers[i]) if headers else None)
                for i in range(first, count, threads)
            ]

    with ThreadPoolExecutor(threads) as pool:
        return [r for batch in pool.map(worker, range(threads)) for r in batch]


def assert_exact_quota(responses: Sequence[httpx.Response], quota: int, name: str) -> None:
    """Exactly ``quota`` passed; every other got a 429 with the headers of an empty bucket."""
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == quota, statuses
    assert statuses.count(429) == len(responses) - quota, statuses
    for response in responses:
        headers = rate_headers(response.headers)
        assert headers["X-RateLimit-Limit"] == str(quota)
        assert headers["RateLimit-Policy"].startswith(f'"{name}";q={quota};w=')
        if response.status_code == 429:
            assert headers["X-RateLimit-Remaining"] == "0"
            assert int(headers["Retry-After"]) >= 1
            assert int(headers["X-RateLimit-Reset"]) >= int(headers["Retry-After"])
            assert_denied_body(response.json(), response.headers)
    allowed = sorted(
        int(rate_headers(r.headers)["X-RateLimit-Remaining"])
        for r in responses
        if r.status_code == 200
    )
    # Each allowed request saw its own count: quota-1, ..., 0, each exactly once.
    assert allowed == list(range(quota))


def python_tool(name: str) -> str:
    """Path of a console script installed next to this interpreter."""
    return str(VENV_BIN / name)
