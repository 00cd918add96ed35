"""Render a :class:`~flux.analytics.aggregate.Snapshot` in the Prometheus text exposition format
(version 0.0.4, ``Content-Type: text/plain; version=0.0.4``).

Metrics (counts are estimates scaled back from sampled events, so they may be fractional when
``sample_rate < 1``):

- ``flux_decisions_total{limit, endpoint, decision="allowed"|"blocked"}`` (counter)
- ``flux_errors_total{limit, endpoint}`` (counter): decisions that failed (store unreachable)
- ``flux_decision_latency_seconds{limit, endpoint}`` (histogram): time to decide
- ``flux_limit{limit, endpoint}`` (gauge): the limit's capacity, as last reported
- ``flux_store_up{source}`` (gauge): 1 when the analytics store answers
- ``flux_analytics_workers`` (gauge): processes that reported in the last 30 s (Redis), or
  alive with a record (shared region)
- ``flux_analytics_stream_length`` (gauge): entries in the Redis event stream
- ``flux_analytics_dropped_events_total`` (counter): events lost to a failing sink
- ``flux_breaker_state{state}`` (gauge): workers whose Redis circuit breaker is in ``state``
- ``flux_shared_slots{path}``, ``flux_shared_keys{path, state="live"|"pending"}`` (gauges) and
  ``flux_shared_evictions_total{path}`` (counter): each shared-memory region this process has
  open (``storage = "shared"``, or the pre-fork server's own region), as every process using
  it sees it (read from the region, not summed over workers)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from flux import _prefork, _shared
from flux.analytics.aggregate import LATENCY_BUCKETS, Snapshot

__all__ = ["CONTENT_TYPE", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    """A label value escaped as the exposition format requires."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{name}="{_escape(value)}"' for name, value in labels.items())
    return "{" + inner + "}"


def _value(value: float) -> str:
    """A sample value: whole numbers without a decimal point, others in full precision."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _bound(bound: float) -> str:
    return repr(float(bound))


def _family(name: str, kind: str, help_text: str, samples: Iterable[str]) -> list[str]:
    lines = list(samples)
    if not lines:
        return []
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *lines]


def _region_stats() -> list[dict[str, Any]]:
    """The stats of every region this process has open: ``[shared]``'s and the pre-fork
    server's (once each). They are read from the region's header, which every process shares,
    so they are already the region's totals: never summed over workers."""
    regions = list(_shared.open_regions())
    automatic = _prefork.opened_region()
    if automatic is not None and all(r.path != automatic.path for r in regions):
        regions.append(automatic)
    return [region.stats() for region in regions]


def render(snapshot: Snapshot) -> str:
    """The whole ``/metrics`` page for ``snapshot``."""
    counts = sorted(snapshot.aggregate.counts.items())
    out: list[str] = []
    out += _family(
        "flux_decisions_total",
        "counter",
        "Rate limit decisions by limit, endpoint and decision.",
        (
            f"flux_decisions_total{_labels(limit=limit, endpoint=endpoint, decision=decision)}"
            f" {_value(value)}"
            for (limit, endpoint), c in counts
            for decision, value in (("allowed", c.allowed), ("blocked", c.blocked))
        ),
    )
    out += _family(
        "flux_errors_total",
        "counter",
        "Rate limit decisions that failed (store unreachable or misconfigured).",
        (
            f"flux_errors_total{_labels(limit=limit, endpoint=endpoint)} {_value(c.errors)}"
            for (limit, endpoint), c in counts
        ),
    )
    histogram: list[str] = []
    for (limit, endpoint), c in counts:
        cumulative = 0.0
        for bound, value in zip((*LATENCY_BUCKETS, math.inf), c.buckets):
            cumulative += value
            le = "+Inf" if math.isinf(bound) else _bound(bound)
            labels = _labels(limit=limit, endpoint=endpoint, le=le)
            histogram.append(f"flux_decision_latency_seconds_bucket{labels} {_value(cumulative)}")
        labels = _labels(limit=limit, endpoint=endpoint)
        histogram.append(f"flux_decision_latency_seconds_sum{labels} {_value(c.latency_sum)}")
        histogram.append(f"flux_decision_latency_seconds_count{labels} {_value(cumulative)}")
    out += _family(
        "flux_decision_latency_seconds",
        "histogram",
        "Time taken to decide, in seconds.",
        histogram,
    )
    out += _family(
        "flux_limit",
        "gauge",
        "Capacity of the limit (burst), as reported by its latest decision.",
        (
            f"flux_limit{_labels(limit=limit, endpoint=endpoint)} {c.limit}"
            for (limit, endpoint), c in counts
            if c.limit is not None
        ),
    )
    if snapshot.store_up is not None:
        out += _family(
            "flux_store_up",
            "gauge",
            "1 when the analytics store answers, else 0.",
            [f"flux_store_up{_labels(source=snapshot.source)} {int(snapshot.store_up)}"],
        )
    if snapshot.workers is not None:
        out += _family(
            "flux_analytics_workers",
            "gauge",
            "Processes whose analytics are summed here: alive on a shared region, or "
            "reported in the last 30 seconds to Redis.",
            [f"flux_analytics_workers {snapshot.workers}"],
        )
    if snapshot.stream_length is not None:
        out += _family(
            "flux_analytics_stream_length",
            "gauge",
            "Entries in the Redis stream of decision events.",
            [f"flux_analytics_stream_length {snapshot.stream_length}"],
        )
    out += _family(
        "flux_analytics_dropped_events_total",
        "counter",
        "Decision events lost because the analytics sink failed.",
        [f"flux_analytics_dropped_events_total {_value(snapshot.dropped)}"],
    )
    out += _family(
        "flux_breaker_state",
        "gauge",
        "Workers whose Redis circuit breaker is in this state.",
        (
            f"flux_breaker_state{_labels(state=state)} {count}"
            for state, count in sorted(snapshot.breakers.items())
        ),
    )
    regions = _region_stats()
    out += _family(
        "flux_shared_slots",
        "gauge",
        "Slots of a shared-memory region: the most keys it holds at once.",
        (f"flux_shared_slots{_labels(path=str(r['path']))} {r['slots']}" for r in regions),
    )
    out += _family(
        "flux_shared_keys",
        "gauge",
        "Keys held in a shared-memory region (pending: claims in progress or left by a "
        "killed process).",
        (
            f"flux_shared_keys{_labels(path=str(r['path']), state=state)} {r[state]}"
            for r in regions
            for state in ("live", "pending")
        ),
    )
    out += _family(
        "flux_shared_evictions_total",
        "counter",
        "Keys evicted from a shared-memory region, least recently used first, to make room.",
        (
            f"flux_shared_evictions_total{_labels(path=str(r['path']))} {r['evictions']}"
            for r in regions
        ),
    )
    return "\n".join(out) + "\n"
