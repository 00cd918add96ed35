"""record(): what it counts, sampling, hashing, errors, hooks; all on the in-process sink."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from analytics_support import make_config

from flux import RateLimiter, RateLimitResult, analytics
from flux.analytics import events, hooks, lifecycle
from flux.analytics.aggregate import Aggregate, RawEvent, quantile
from flux.analytics.sinks import MemorySink
from flux.identity import hash_identity


def _traffic(limiter: RateLimiter, endpoint: str, identities: dict[str, int]) -> tuple[int, int]:
    """Hit ``limiter`` as each identity ``n`` times, recording every decision."""
    allowed = blocked = 0
    for identity, n in identities.items():
        for _ in range(n):
            result = limiter.hit(identity)
            analytics.record("login", endpoint, result, 4e-6, identity)
            allowed += result.allowed
            blocked += not result.allowed
    return allowed, blocked


def test_disabled_records_nothing() -> None:
    assert analytics.configure(make_config(enabled=False)) is False
    assert not analytics.is_enabled()
    analytics.record("login", "/login", RateLimitResult(False), 1e-6, "ip:1.2.3.4")
    assert analytics.stats()["totals"]["total"] == 0
    assert analytics.current() is None
    assert analytics.server_address() is None


def test_first_record_configures_from_flux_toml(monkeypatch: pytest.MonkeyPatch) -> None:
    config = make_config()
    # Never configured: the lifecycle's state and the entry points' copy of it.
    monkeypatch.setattr(lifecycle, "_configured", False)
    monkeypatch.setattr(events, "_configured", False)
    monkeypatch.setattr(lifecycle, "get_config", lambda: config)
    analytics.record("login", "/login", RateLimitResult(True, 4, limit=5), 1e-6, "ip:1.2.3.4")
    assert analytics.is_enabled()
    assert analytics.server_address() == ("127.0.0.1", config.analytics.port)
    totals = analytics.stats()["totals"]
    assert (totals["allowed"], totals["blocked"], totals["total"]) == (1, 0, 1)
    assert totals["latency_ms"]["mean"] == 0.001


def test_counts_match_the_traffic() -> None:
    analytics.configure(make_config(), serve=False)
    limiter = RateLimiter(3, 60)
    assert _traffic(limiter, "/login", {"ip:10.0.0.1": 5, "ip:10.0.0.2": 2}) == (5, 2)
    assert _traffic(limiter, "/signup", {"ip:10.0.0.3": 7}) == (3, 4)
    document = analytics.stats()
    assert document["totals"]["allowed"] == 8
    assert document["totals"]["blocked"] == 6
    rows = {row["endpoint"]: row for row in document["endpoints"]}
    assert rows["/login"]["allowed"] == 5 and rows["/login"]["blocked"] == 2
    assert rows["/signup"]["allowed"] == 3 and rows["/signup"]["blocked"] == 4
    assert rows["/signup"]["block_rate"] == pytest.approx(4 / 7)
    assert rows["/login"]["limit"] == 3
    assert document["limits"]["login"]["total"] == 14
    assert document["top_blocked"] == [
        {"limit": "login", "identity": "ip:10.0.0.3", "blocked": 4},
        {"limit": "login", "identity": "ip:10.0.0.1", "blocked": 2},
    ]
    recent = document["recent_blocks"]
    assert len(recent) == 6
    assert recent[0]["identity"] == "ip:10.0.0.3" and recent[0]["endpoint"] == "/signup"
    assert recent[0]["retry_after"] > 0


def test_stats_for_one_limit_and_one_identity() -> None:
    analytics.configure(make_config(), serve=False)
    for name in ("login", "search"):
        for _ in range(3):
            analytics.record(name, "/x", RateLimitResult(False, limit=2), 1e-5, "user:7")
    analytics.record("search", "/x", RateLimitResult(True, 1, limit=2), 1e-5, "user:8")
    document = analytics.stats("search", identity="user:7")
    assert [row["name"] for row in document["endpoints"]] == ["search"]
    assert document["totals"]["total"] == 4
    assert document["identity"] == {
        "identity": "user:7",
        "blocked": 3,
        "by_limit": {"search": 3.0},
    }
    everywhere = analytics.stats(identity="user:7")["identity"]
    assert everywhere["blocked"] == 6


def test_sampling_at_one_tenth_keeps_totals_within_a_few_percent() -> None:
    analytics.configure(make_config(sample_rate=0.1), serve=False, seed=20240611)
    blocked = RateLimitResult(False, limit=10)
    allowed = RateLimitResult(True, 5, limit=10)
    for i in range(10_000):
        analytics.record("api", "/items", blocked if i % 4 == 0 else allowed, 2e-6, f"ip:{i % 7}")
    recorded = analytics.current()
    assert recorded is not None and recorded.weight == pytest.approx(10.0)
    totals = analytics.stats()["totals"]
    assert totals["total"] == pytest.approx(10_000, rel=0.05)
    assert totals["blocked"] == pytest.approx(2_500, rel=0.10)
    assert totals["block_rate"] == pytest.approx(0.25, abs=0.02)
    # Only the sampled tenth was buffered: the request path kept ~1000 events, not 10 000.
    assert 850 <= totals["total"] / 10 <= 1150


def test_sample_rate_zero_records_nothing_but_hooks_still_run() -> None:
    seen: list[hooks.Event] = []
    hooks.on_block(seen.append)
    analytics.configure(make_config(sample_rate=0.0), serve=False)
    analytics.record("api", "/", RateLimitResult(False), 1e-6, "ip:1")
    assert analytics.stats()["totals"]["total"] == 0
    assert len(seen) == 1


def test_hash_keys_digests_identities_once() -> None:
    analytics.configure(make_config(hash_keys=True), serve=False)
    denied = RateLimitResult(False, limit=1)
    analytics.record("login", "/login", denied, 1e-6, "ip:192.0.2.1")
    # The decorator already digests identities when hash_keys is on: not hashed twice.
    analytics.record("login", "/login", denied, 1e-6, hash_identity("ip:192.0.2.1"))
    document = analytics.stats()
    assert document["top_blocked"] == [
        {"limit": "login", "identity": hash_identity("ip:192.0.2.1"), "blocked": 2}
    ]
    assert "192.0.2.1" not in str(document)


def test_errors_are_counted_apart_and_reach_on_error() -> None:
    errors: list[hooks.Event] = []
    hooks.on_error(errors.append)
    analytics.configure(make_config(), serve=False)
    failure = ConnectionError("redis down")
    analytics.record_error("login", "/login", failure, 0.2, "ip:1")
    analytics.record("login", "/login", RateLimitResult(True, 1, limit=2), 1e-6, "ip:1")
    totals = analytics.stats()["totals"]
    assert (totals["errors"], totals["total"], totals["allowed"]) == (1, 1, 1)
    assert len(errors) == 1
    assert errors[0].error is failure and errors[0].allowed is False
    assert errors[0].limit == "login" and errors[0].latency == 0.2


def test_hooks_see_each_decision_even_with_analytics_off() -> None:
    analytics.configure(make_config(enabled=False))
    allowed: list[hooks.Event] = []
    blocked: list[hooks.Event] = []

    @hooks.on_allow
    def on_allow(event: hooks.Event) -> None:
        allowed.append(event)

    hooks.on_block(blocked.append)
    result = RateLimitResult(False, 0, 0.0, 1.5, 3)
    analytics.record("login", "/login", RateLimitResult(True, 2, limit=3), 1e-6, "ip:1")
    analytics.record("login", "/login", result, 2e-6, "ip:2")
    assert [e.identity for e in allowed] == ["ip:1"]
    assert allowed[0].remaining == 2 and allowed[0].quota == 3
    event = blocked[0]
    assert (event.limit, event.endpoint, event.allowed, event.identity) == (
        "login",
        "/login",
        False,
        "ip:2",
    )
    assert event.result is result and event.latency == 2e-6 and event.time > 0
    hooks.remove(on_allow)
    analytics.record("login", "/login", RateLimitResult(True), 1e-6, "ip:1")
    assert len(allowed) == 1
    assert hooks.registered("block") == (blocked.append,)


def test_decorated_calls_skip_reporting_only_while_nothing_listens() -> None:
    """The per-request path skips timing and reporting when analytics is off and no hook is
    registered, and picks them up again the moment either changes."""
    from flux import rate_limit
    from flux.integrations import _report

    @rate_limit(requests=100, period=60, key="k")
    def work() -> str:
        return "done"

    analytics.configure(make_config(enabled=False))
    work()  # the first decision loads the recorder, which tells the reporter from then on
    assert _report.wanted is False
    seen: list[hooks.Event] = []
    hooks.on_allow(seen.append)
    assert _report.wanted is True
    work()
    assert [(e.identity, e.remaining) for e in seen] == [("k", 98)]  # the second hit
    hooks.clear()
    assert _report.wanted is False
    analytics.configure(make_config(enabled=True), serve=False)
    assert _report.wanted is True
    work()
    assert analytics.flush() == 1
    analytics.shutdown()
    assert _report.wanted is False


def test_a_failing_hook_is_logged_once_and_never_breaks_the_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = []

    def broken(event: hooks.Event) -> None:
        calls.append(event)
        raise RuntimeError("hook bug")

    hooks.on_block(broken)
    analytics.configure(make_config(), serve=False)
    with caplog.at_level(logging.DEBUG, logger="flux.analytics"):
        for _ in range(3):
            analytics.record("login", "/", RateLimitResult(False), 1e-6, "ip:1")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "hook bug" in (errors[0].exc_text or "")
    assert len(calls) == 3  # still called
    assert analytics.stats()["totals"]["blocked"] == 3


def test_a_failing_sink_drops_events_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    class Failing(MemorySink):
        broken = True

        def write(
            self, events: Any, aggregate: Aggregate, weight: float, status: Any = None
        ) -> None:
            if self.broken:
                raise OSError("sink unreachable")
            super().write(events, aggregate, weight, status)

    sink = Failing()
    analytics.configure(make_config(), serve=False, sink=sink)
    with caplog.at_level(logging.WARNING, logger="flux.analytics"):
        for _ in range(2):
            analytics.record("a", "/", RateLimitResult(True), 1e-6)
            assert analytics.flush() == 0
        sink.broken = False
        analytics.record("a", "/", RateLimitResult(True), 1e-6)
        assert analytics.flush() == 1
    messages = [r.getMessage() for r in caplog.records]
    assert sum("cannot write events" in m for m in messages) == 1
    assert sum("works again" in m for m in messages) == 1
    snapshot = analytics.snapshot()
    assert snapshot.dropped == 2
    assert snapshot.aggregate.counts[("a", "/")].allowed == 1


def test_the_flusher_thread_flushes_by_itself() -> None:
    sink = MemorySink()
    analytics.configure(make_config(), serve=False, sink=sink, flush_interval=0.02)
    analytics.record("a", "/", RateLimitResult(True), 1e-6)
    done = threading.Event()
    for _ in range(200):
        if sink.snapshot().aggregate.events == 1:
            done.set()
            break
        done.wait(0.01)
    assert done.is_set()


def test_shutdown_flushes_pending_events() -> None:
    sink = MemorySink()
    analytics.configure(make_config(), serve=False, sink=sink, flush_interval=60)
    analytics.record("a", "/", RateLimitResult(False), 1e-6, "x")
    analytics.shutdown()
    assert sink.snapshot().aggregate.counts[("a", "/")].blocked == 1
    analytics.record("a", "/", RateLimitResult(False), 1e-6, "x")  # off now: a no-op
    assert not analytics.is_enabled()


def test_unnamed_limits_bools_and_missing_latency() -> None:
    analytics.configure(make_config(), serve=False)
    analytics.record(None, None, True)
    analytics.record(None, None, False, identity="k")
    rows = analytics.stats()["endpoints"]
    assert rows == [
        {
            "name": "default",
            "endpoint": "",
            "allowed": 1,
            "blocked": 1,
            "errors": 0,
            "total": 2,
            "block_rate": 0.5,
            "limit": None,
            "latency_ms": {"mean": None, "p50": None, "p99": None},
        }
    ]


def test_quantile_follows_histogram_quantile() -> None:
    buckets = [0.0] * 17
    assert quantile(0.5, buckets) is None
    buckets[2] = 10.0  # all in (25 µs, 50 µs]
    assert quantile(0.5, buckets) == pytest.approx(37.5e-6)
    buckets[-1] = 990.0  # above every bound: the top bound
    assert quantile(0.99, buckets) == 1.0


def test_record_keeps_a_reference_not_a_copy() -> None:
    """The request path only appends a tuple; the flusher reads the result later."""
    analytics.configure(make_config(), serve=False, flush_interval=60)
    result = RateLimitResult(True, 1, limit=2)
    analytics.record("a", "/e", result, 1e-6, "id")
    current = analytics.current()
    assert current is not None
    (event,) = list(current.buffer)
    expected: RawEvent = (event[0], "a", "/e", result, 1e-6, "id", None)
    assert event == expected and event[3] is result


def _record_at(monkeypatch: pytest.MonkeyPatch, when: float, allowed: bool, n: int) -> None:
    monkeypatch.setattr(events, "_time", lambda: when)
    for _ in range(n):
        analytics.record("api", "/", RateLimitResult(allowed, limit=9), 1e-6, "ip:1")


def test_timeline_and_rates_count_per_second(monkeypatch: pytest.MonkeyPatch) -> None:
    analytics.configure(make_config(), serve=False)
    now = time.time()
    _record_at(monkeypatch, now - 5, True, 30)
    _record_at(monkeypatch, now - 4, False, 10)
    _record_at(monkeypatch, now - 500, True, 7)  # long ago: in the totals only
    _record_at(monkeypatch, now, True, 3)  # this second is still filling up: not shown yet
    document = analytics.stats()
    timeline = document["timeline"]
    assert len(timeline["allowed"]) == len(timeline["blocked"]) == 60
    assert timeline["start"] + 59 == int(document["generated_at"]) - 2
    index = int(now - 5) - timeline["start"]
    assert timeline["allowed"][index] == 30 and timeline["blocked"][index + 1] == 10
    assert sum(timeline["allowed"]) == 30 and sum(timeline["blocked"]) == 10
    assert document["rates"] == {"window_s": 10, "decisions": 4.0, "blocked": 1.0}
    assert document["totals"]["total"] == 50
