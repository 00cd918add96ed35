"""``flux clear`` takes a blocked client exactly as the dashboard shows it (limit name and
identity) and lifts the block, for decorators and middlewares alike.

Week-one fault: ``clear --identity ip:127.0.0.1 --limit app.search`` found 0 keys for an
unnamed decorator, and ``clear --identity 203.0.113.9`` missed the middleware's keys: the
decorator put its bucket inside the key's identity part.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flask
from analytics_support import make_config

from flux import analytics, clear, rate_limit
from flux.integrations.flask import FluxLimiter


def _blocked(config: Any) -> dict[str, dict[str, float]]:
    """{limit: {identity: blocked}} as the dashboard and ``/stats`` show it."""
    analytics.flush()
    document = analytics.stats(config=config)
    shown: dict[str, dict[str, float]] = {}
    for limit in {endpoint["name"] for endpoint in document["endpoints"]}:
        for row in analytics.stats(limit, config=config).get("top_blocked", []):
            shown.setdefault(limit, {})[row["identity"]] = row["blocked"]
    return shown


def _lifted(get: Callable[[str, str], int], path: str, ip: str) -> bool:
    """Whether ``ip`` passes on ``path`` within 3 s: each process may answer a denial from its
    local deny cache for up to one second before asking Redis again."""
    deadline = time.monotonic() + 3
    while get(path, ip) != 200:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)  # the deny cache's horizon is a real second
    return True


def test_clear_lifts_the_blocks_the_dashboard_shows(redis_url: str, tmp_path: Path) -> None:
    config = make_config(redis_url)
    toml = tmp_path / "flux.toml"
    toml.write_text(f'[redis]\nurl = "{redis_url}"\n')
    analytics.configure(config, serve=False)
    app = flask.Flask(__name__)
    limits = {"requests": 3, "period": 3600}
    FluxLimiter(app, default=limits, exempt_paths=["/search"], config=config)

    @app.get("/search")
    @rate_limit(requests=2, period=3600, config=config)
    def search() -> str:
        return "found"

    @app.get("/open")
    def open_view() -> str:
        return "open"

    client = app.test_client()
    get = lambda path, ip: client.get(path, environ_base={"REMOTE_ADDR": ip}).status_code  # noqa: E731
    assert [get("/search", "127.0.0.1") for _ in range(3)] == [200, 200, 429]
    assert [get("/open", "203.0.113.9") for _ in range(4)] == [200, 200, 200, 429]

    shown = _blocked(config)
    search_name = next(name for name in shown if name.endswith("search"))
    assert shown[search_name] == {"ip:127.0.0.1": 1.0}
    assert shown["global"] == {"ip:203.0.113.9": 1.0}

    # The decorator's block, by the names shown; the middleware's, by the bare address.
    argv = ["--config", str(toml), "--identity", "ip:127.0.0.1", "--limit", search_name]
    assert clear.main(argv) == 0
    assert _lifted(get, "/search", "127.0.0.1")
    assert clear.main(["--config", str(toml), "--identity", "203.0.113.9"]) == 0
    assert _lifted(get, "/open", "203.0.113.9")
