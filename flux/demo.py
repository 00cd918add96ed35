"""``python -m flux demo``: flux's main job in a few seconds, with nothing else running.

It serves a small HTTP endpoint on a free loopback port, protected by a flux limit on the
embedded store, fires real HTTP requests at it, and prints each response's status and rate-limit
headers: 200s turn into 429s when the burst is spent, and back into 200s once the client has
waited as long as ``Retry-After`` told it to.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from flux.config import FluxConfig, RateLimitPolicy
from flux.headers import (
    RATELIMIT,
    RETRY_AFTER,
    X_RATELIMIT_LIMIT,
    X_RATELIMIT_REMAINING,
    X_RATELIMIT_RESET,
    AppliedLimit,
    build_headers,
    retry_after_seconds,
)
from flux.limiter import RateLimiter

SHOWN_HEADERS = (
    X_RATELIMIT_LIMIT,
    X_RATELIMIT_REMAINING,
    X_RATELIMIT_RESET,
    RETRY_AFTER,
    RATELIMIT,
)
LIMIT_NAME = "demo"


def _handler_for(limiter: RateLimiter) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        """GET /hello, limited per client address."""

        def do_GET(self) -> None:
            result = limiter.hit(self.client_address[0], "/hello")
            headers = build_headers([AppliedLimit(LIMIT_NAME, limiter.period, result)])
            body: dict[str, object]
            if result.allowed:
                status, body = 200, {"message": "hello"}
            else:
                wait = retry_after_seconds(result.retry_after)
                status, body = (
                    429,
                    {
                        "error": "Too Many Requests",
                        "retry_after": wait,
                        "detail": f"Rate limit exceeded. Try again in {wait} seconds.",
                    },
                )
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            """Silence the default access log: the client prints what matters."""

    return Handler


def _get(url: str) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as denied:
        return denied.code, dict(denied.headers)


def _show(number: int, status: int, headers: dict[str, str]) -> None:
    label = "200 OK               " if status == 200 else f"{status} Too Many Requests"
    shown = "  ".join(f"{name}: {headers[name]}" for name in SHOWN_HEADERS if name in headers)
    print(f"  #{number:<2} {label}  {shown}", flush=True)


def run(requests: int, period: float, burst: int | None, policy: str, count: int) -> int:
    """Serve, fire ``count`` requests, wait for Retry-After, fire again; returns an exit code."""
    # Built-in defaults, whatever flux.toml says: the demo always runs on the embedded store.
    limiter = RateLimiter(requests, period, burst=burst, policy=policy, config=FluxConfig())
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(limiter))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hello"
    try:
        print(f"flux demo: {limiter!r}")
        print(f"serving {url} (embedded store); a burst of {count} requests:")
        statuses = []
        retry = 0
        for number in range(1, count + 1):
            status, headers = _get(url)
            statuses.append(status)
            _show(number, status, headers)
            if status == 429:
                retry = int(headers[RETRY_AFTER])
        if retry:
            print(f"denied: waiting {retry} s as Retry-After says, then trying again:")
            time.sleep(retry)
            for number in range(count + 1, count + 3):
                status, headers = _get(url)
                statuses.append(status)
                _show(number, status, headers)
        allowed, denied = statuses.count(200), statuses.count(429)
        print(f"{allowed} allowed, {denied} limited.")
        return 0 if allowed and denied else 1
    finally:
        server.shutdown()
        server.server_close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m flux demo``."""
    parser = argparse.ArgumentParser(prog="python -m flux demo", description=__doc__)
    parser.add_argument("--requests", type=int, default=5, help="requests per period (5)")
    parser.add_argument("--period", type=float, default=2.0, help="period in seconds (2)")
    parser.add_argument("--burst", type=int, default=None, help="burst (default: requests)")
    parser.add_argument(
        "--policy", default="gcra", choices=[str(p) for p in RateLimitPolicy], help="algorithm"
    )
    parser.add_argument("--count", type=int, default=8, help="requests in the burst (8)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    return run(args.requests, args.period, args.burst, args.policy, args.count)


if __name__ == "__main__":
    raise SystemExit(main())
