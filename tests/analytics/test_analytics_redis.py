"""The Redis sink: stream and counters, retention, several workers summed, Redis down."""

from __future__ import annotations

import json
import logging
import multiprocessing
import time
import urllib.request
from typing import Any

import pytest
from analytics_support import RedisServer, free_port, make_config
from prometheus_client.parser import text_string_to_metric_families

from flux import RateLimitResult, analytics
from flux.analytics.aggregate import hash_identity
from flux.analytics.server import AnalyticsServer
from flux.analytics.sinks import RedisReader, redis_client

STREAM = "flux:events"


def test_events_go_to_the_stream_and_counters(redis_url: str, redis_client: Any) -> None:
    analytics.configure(make_config(redis_url), serve=False)
    analytics.record("login", "/login", RateLimitResult(True, 2, limit=3), 2e-4, "ip:1")
    analytics.record("login", "/login", RateLimitResult(False, 0, 1.0, 0.5, 3), 3e-4, "ip:2")
    analytics.record_error("login", "/login", TimeoutError("slow"), 0.2, "ip:3")
    assert analytics.flush() == 3
    entries = redis_client.xrange(STREAM)
    assert [fields["allowed"] for _, fields in entries] == ["1", "0", "0"]
    first, second, third = (fields for _, fields in entries)
    assert first["limit"] == "login" and first["endpoint"] == "/login"
    assert (first["remaining"], first["quota"], first["latency_us"]) == ("2", "3", "200")
    assert first["identity"] == "ip:1" and first["weight"] == "1.0"
    assert second["identity"] == "ip:2" and "error" not in second
    assert third["error"] == "TimeoutError"
    counters = redis_client.hgetall(f"{STREAM}:counters")
    assert float(counters['["login","/login","allowed"]']) == 1
    assert float(counters['["login","/login","blocked"]']) == 1
    assert float(counters['["login","/login","errors"]']) == 1
    assert redis_client.zrange(f"{STREAM}:blocked:login", 0, -1, withscores=True) == [("ip:2", 1.0)]
    assert json.loads(redis_client.lindex(f"{STREAM}:recent", 0))["identity"] == "ip:2"
    assert redis_client.hlen(f"{STREAM}:workers") == 1
    document = analytics.stats(identity="ip:2")
    assert document["source"] == "redis"
    assert document["totals"]["allowed"] == 1 and document["totals"]["errors"] == 1
    assert document["endpoints"][0]["limit"] == 3
    assert document["identity"]["by_limit"] == {"login": 1.0}
    assert document["store"]["stream_length"] == 3 and document["store"]["workers"] == 1


def test_hash_keys_keeps_identities_out_of_redis(redis_url: str, redis_client: Any) -> None:
    analytics.configure(make_config(redis_url, hash_keys=True), serve=False)
    analytics.record("login", "/", RateLimitResult(False), 1e-5, "ip:198.51.100.4")
    analytics.flush()
    stored = [
        redis_client.xrange(STREAM),
        redis_client.lrange(f"{STREAM}:recent", 0, -1),
        redis_client.zrange(f"{STREAM}:blocked:login", 0, -1),
    ]
    dump = json.dumps(stored)
    assert "198.51.100.4" not in dump
    assert hash_identity("ip:198.51.100.4") in dump


@pytest.mark.parametrize(("batch", "total"), [(1, 1300), (250, 5000), (5000, 5000)])
def test_the_stream_stays_within_its_retention(
    redis_url: str, redis_client: Any, batch: int, total: int
) -> None:
    """MAXLEN ~ trims whole stream nodes: the length never exceeds retention plus one node
    (stream-node-max-entries) and never drops below retention once that many were written."""
    retention = 1000
    slack = int(redis_client.config_get("stream-node-max-entries")["stream-node-max-entries"])
    analytics.configure(make_config(redis_url, retention=retention), serve=False)
    longest = 0
    for i in range(total):
        analytics.record("a", "/", RateLimitResult(True), 1e-6)
        if (i + 1) % batch == 0:
            analytics.flush()
            longest = max(longest, redis_client.xlen(STREAM))
    assert retention <= redis_client.xlen(STREAM) <= longest <= retention + slack
    # The counters keep the full totals; only the event log is bounded.
    assert analytics.stats()["totals"]["total"] == total


def _worker(url: str, port: int, worker: int, n: int) -> None:
    """One worker process: its own recorder, writing to the shared Redis."""
    config = make_config(url, port=port)
    analytics.configure(config, serve=False)
    for i in range(n):
        allowed = i % 5 != 0
        result = RateLimitResult(allowed, 1 if allowed else 0, limit=5)
        analytics.record("api", f"/w{worker % 2}", result, 1e-4, f"ip:{worker}")
    analytics.shutdown()


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_several_worker_processes_are_summed(redis_url: str) -> None:
    port = free_port()
    counts = [300, 500, 700]
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker, args=(redis_url, port, i, n)) for i, n in enumerate(counts)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(30)
        assert process.exitcode == 0
    client = redis_client(redis_url)
    server = AnalyticsServer(RedisReader(client, STREAM), port)
    server.start()
    try:
        with urllib.request.urlopen(f"{server.url}metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
        client.close()
    assert _metric(text, "flux_decisions_total") == sum(counts)
    assert _metric(text, "flux_decisions_total", decision="blocked") == sum(
        len(range(0, n, 5)) for n in counts
    )
    assert _metric(text, "flux_decisions_total", endpoint="/w0") == counts[0] + counts[2]
    assert _metric(text, "flux_analytics_workers") == 3
    assert _metric(text, "flux_decision_latency_seconds_count") == sum(counts)


def test_forked_children_record_with_their_own_flusher(redis_url: str) -> None:
    """A process forked after configure() (gunicorn --preload, multiprocessing) records too."""
    analytics.configure(make_config(redis_url), serve=False, flush_interval=0.05)
    analytics.record("api", "/", RateLimitResult(True))
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_forked_child) for _ in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(30)
        assert process.exitcode == 0
    analytics.flush()
    assert analytics.stats()["totals"]["total"] == 1 + 2 * 50


def _forked_child() -> None:
    for _ in range(50):
        analytics.record("api", "/", RateLimitResult(True))
    analytics.flush()


def test_a_dead_redis_costs_the_request_nothing(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    analytics.configure(make_config(dead), serve=False)
    with caplog.at_level(logging.WARNING, logger="flux.analytics"):
        for _ in range(10):
            analytics.record("a", "/", RateLimitResult(True), 1e-6)
        assert analytics.flush() == 0
        analytics.record("a", "/", RateLimitResult(True), 1e-6)
        analytics.flush()
    assert sum("cannot write events" in r.getMessage() for r in caplog.records) == 1
    current = analytics.current()
    assert current is not None and current.dropped == 11
    document = analytics.stats()
    assert document["store"]["up"] is False and document["totals"]["total"] == 0


def test_metrics_report_a_dead_redis() -> None:
    client = redis_client(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    server = AnalyticsServer(RedisReader(client, STREAM), free_port())
    server.start()
    try:
        with urllib.request.urlopen(f"{server.url}metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
        client.close()
    assert _metric(text, "flux_store_up", source="redis") == 0


def test_the_timeline_is_shared_through_redis(
    redis_url: str, redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flux.analytics import events

    analytics.configure(make_config(redis_url, sample_rate=0.5), serve=False, seed=1)
    now = time.time()
    monkeypatch.setattr(events, "_time", lambda: now - 3)
    for _ in range(200):
        analytics.record("api", "/", RateLimitResult(False, limit=9), 1e-6, "ip:1")
    analytics.flush()
    key = f"{STREAM}:ts:{int(now - 3)}"
    assert 0 < redis_client.ttl(key) <= 300
    document = analytics.stats()
    timeline = document["timeline"]
    index = int(now - 3) - timeline["start"]
    assert timeline["blocked"][index] == document["totals"]["blocked"]
    assert document["totals"]["blocked"] == pytest.approx(200, rel=0.2)
    assert document["rates"]["blocked"] == pytest.approx(document["totals"]["blocked"] / 10)


def test_every_worker_reports_its_breaker_state_without_being_told_how(
    redis_url: str, redis_client: Any
) -> None:
    # Nothing calls set_breaker_probe: on the Redis store each worker's heartbeat carries its
    # store's breaker state by itself, so flux_breaker_state on /metrics is never empty.
    analytics.configure(make_config(redis_url), serve=False)
    analytics.record("login", "/login", RateLimitResult(True, 2, limit=3), 2e-4, "ip:1")
    assert analytics.flush() == 1
    workers = redis_client.hgetall(f"{STREAM}:workers")
    assert [json.loads(info)["breaker"] for info in workers.values()] == ["closed"]


def test_the_breaker_metric_reports_the_real_state_open_after_redis_dies() -> None:
    # The probe reads the breaker of the very store the limits use (flux._redis.shared_store):
    # closed while Redis answers, open once it died and hits failed. The sink is in process
    # here, so /metrics can still be read with Redis gone.
    from flux._flux import Limiter
    from flux._redis import shared_store
    from flux.analytics.sinks import MemorySink

    server = RedisServer().start()
    try:
        config = make_config(server.url)
        analytics.configure(config, sink=MemorySink(), serve=True)
        address = analytics.server_address()
        assert address is not None
        url = f"http://{address[0]}:{address[1]}/metrics"
        limiter = Limiter(5, 60, prefix="breaker-metric:", store=shared_store(config))
        assert limiter.hit("k").source == "redis"

        def breaker(state: str) -> float:
            with urllib.request.urlopen(url, timeout=5) as response:
                return _metric(response.read().decode(), "flux_breaker_state", state=state)

        assert (breaker("closed"), breaker("open")) == (1, 0)
        server.kill()
        for _ in range(5):
            assert limiter.hit("k").fail_open
        assert (breaker("closed"), breaker("open")) == (0, 1)
    finally:
        server.stop()
