"""The analytics server: /metrics parsed by prometheus_client, /metrics.json, /stats, /, ports."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from analytics_support import free_port, make_config
from prometheus_client.parser import text_string_to_metric_families

from flux import RateLimiter, RateLimitResult, analytics
from flux.analytics import prometheus
from flux.analytics.aggregate import LATENCY_BUCKETS, Aggregate, Snapshot
from flux.analytics.server import AnalyticsServer, start_background
from flux.analytics.sinks import MemorySink

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus page, parsed by prometheus_client's own parser."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _serve_traffic() -> tuple[str, dict[str, tuple[int, int]]]:
    """Analytics on, with known traffic on two endpoints; returns the base URL and the counts."""
    config = make_config()
    analytics.configure(config)
    limiter = RateLimiter(4, 60)
    expected = {}
    for endpoint, clients in (("/login", 3), ("/search", 1)):
        allowed = blocked = 0
        for client in range(clients):
            for _ in range(6):
                result = limiter.hit(f"{endpoint}:{client}")
                analytics.record(
                    "login" if endpoint == "/login" else "search",
                    endpoint,
                    result,
                    3e-5,
                    f"ip:10.0.0.{client}",
                )
                allowed += result.allowed
                blocked += not result.allowed
        expected[endpoint] = (allowed, blocked)
    return f"http://127.0.0.1:{config.analytics.port}", expected


def test_metrics_parse_with_prometheus_client_and_match_the_traffic() -> None:
    base, expected = _serve_traffic()
    status, content_type, text = _get(base + "/metrics")
    assert status == 200
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    samples = _samples(text)
    for endpoint, limit in (("/login", "login"), ("/search", "search")):
        allowed, blocked = expected[endpoint]
        labels = (("decision", "allowed"), ("endpoint", endpoint), ("limit", limit))
        assert samples[("flux_decisions_total", labels)] == allowed
        labels = (("decision", "blocked"), ("endpoint", endpoint), ("limit", limit))
        assert samples[("flux_decisions_total", labels)] == blocked
        pair = (("endpoint", endpoint), ("limit", limit))
        assert samples[("flux_errors_total", pair)] == 0
        assert samples[("flux_limit", pair)] == 4
        count = samples[("flux_decision_latency_seconds_count", pair)]
        assert count == allowed + blocked
        assert samples[("flux_decision_latency_seconds_sum", pair)] == pytest.approx(count * 3e-5)
        buckets = [
            samples[("flux_decision_latency_seconds_bucket", (*pair[:1], ("le", le), pair[1]))]
            for le in [repr(b) for b in LATENCY_BUCKETS] + ["+Inf"]
        ]
        assert buckets == sorted(buckets) and buckets[-1] == count
        assert buckets[1] == 0 and buckets[2] == count  # 30 µs lies in (25 µs, 50 µs]
    assert expected == {"/login": (12, 6), "/search": (4, 2)}
    assert samples[("flux_store_up", (("source", "memory"),))] == 1
    assert samples[("flux_analytics_dropped_events_total", ())] == 0


def test_metrics_escape_label_values() -> None:
    aggregate = Aggregate()
    odd = 'a "quoted" \\ back\nslash'
    aggregate.counts_for("lim\\it", odd).allowed = 2.5
    text = prometheus.render(Snapshot(source="memory", aggregate=aggregate))
    samples = _samples(text)
    key = (
        "flux_decisions_total",
        (("decision", "allowed"), ("endpoint", odd), ("limit", "lim\\it")),
    )
    assert samples[key] == 2.5


def test_metrics_json_has_every_endpoint() -> None:
    base, expected = _serve_traffic()
    status, content_type, text = _get(base + "/metrics.json")
    assert (status, content_type) == (200, "application/json")
    document = json.loads(text)
    rows = {row["endpoint"]: row for row in document["endpoints"]}
    for endpoint, (allowed, blocked) in expected.items():
        row = rows[endpoint]
        assert (row["allowed"], row["blocked"], row["total"]) == (
            allowed,
            blocked,
            allowed + blocked,
        )
        assert row["block_rate"] == pytest.approx(blocked / (allowed + blocked))
        assert row["limit"] == 4
        assert 0.025 < row["latency_ms"]["p50"] <= 0.05
        assert row["latency_ms"]["mean"] == pytest.approx(0.03)
    assert document["totals"]["total"] == 24
    assert document["source"] == "memory"
    assert document["top_blocked"][0] == {"limit": "login", "identity": "ip:10.0.0.0", "blocked": 2}


def test_stats_routes() -> None:
    base, _ = _serve_traffic()
    document = json.loads(_get(base + "/stats/search?identity=ip:10.0.0.0")[2])
    assert [row["name"] for row in document["endpoints"]] == ["search"]
    assert document["identity"] == {
        "identity": "ip:10.0.0.0",
        "blocked": 2,
        "by_limit": {"search": 2.0},
    }
    everything = json.loads(_get(base + "/stats")[2])
    assert everything["totals"]["total"] == 24
    unknown = json.loads(_get(base + "/stats/nope")[2])
    assert unknown["endpoints"] == [] and unknown["totals"]["total"] == 0
    assert _get(base + "/nope")[0] == 404
    assert _get(base + "/healthz")[2] == "ok\n"
    request = urllib.request.Request(base + "/metrics", method="HEAD")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200 and response.read() == b""


def test_dashboard_is_self_contained() -> None:
    base, _ = _serve_traffic()
    status, content_type, html = _get(base + "/")
    assert (status, content_type) == (200, "text/html; charset=utf-8")
    assert "<script>" in html and "metrics.json" in html
    # No external assets: no src/href to another origin, no <link>, no script src.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<link" not in html and "<script src" not in html
    assert "@import" not in html and "url(" not in html


def test_a_taken_port_is_not_an_error_for_a_worker(caplog: pytest.LogCaptureFixture) -> None:
    first = AnalyticsServer(MemorySink(), free_port())
    try:
        port = first.server_address[1]
        with caplog.at_level(logging.DEBUG, logger="flux.analytics"):
            assert start_background(MemorySink(), port) is None
            assert analytics.configure(make_config(port=port)) is True
        assert analytics.is_enabled() and analytics.server_address() is None
        debug = [r for r in caplog.records if "is taken" in r.getMessage()]
        assert debug and all(r.levelno == logging.DEBUG for r in debug)
        analytics.record("a", "/", RateLimitResult(True))
        assert analytics.stats()["totals"]["total"] == 1
    finally:
        first.server_close()


def test_server_binds_loopback_only() -> None:
    config = make_config()
    analytics.configure(config)
    assert analytics.server_address() == ("127.0.0.1", config.analytics.port)


def _wait_for(url: str, process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {process.communicate()}")
        try:
            with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("server did not start")


def test_python_m_flux_serve_reads_redis_and_stops_on_ctrl_c(redis_url: str, tmp_path: Any) -> None:
    analytics.configure(make_config(redis_url), serve=False)
    for _ in range(3):
        analytics.record("api", "/v1", RateLimitResult(False, limit=9), 1e-4, "ip:1")
    analytics.flush()
    port = free_port()
    env = {**os.environ, "PYTHONPATH": ROOT}
    env.pop("FLUX_CONFIG", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "flux", "serve", "--port", str(port), "--redis", redis_url],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}", process)
        samples = _samples(_get(f"http://127.0.0.1:{port}/metrics")[2])
        labels = (("decision", "blocked"), ("endpoint", "/v1"), ("limit", "api"))
        assert samples[("flux_decisions_total", labels)] == 3
        assert samples[("flux_store_up", (("source", "redis"),))] == 1
        # A second `serve` on the same port is an error for the command (not for a worker).
        second = subprocess.run(
            [sys.executable, "-m", "flux", "serve", "--port", str(port), "--redis", redis_url],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert second.returncode == 1 and "cannot listen" in second.stderr
    finally:
        os.kill(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert f"http://127.0.0.1:{port}/" in out
    assert "Traceback" not in err
