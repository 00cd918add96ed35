"""Counters built from decision events, and the snapshot every view is rendered from.

One :class:`Aggregate` holds weighted counts per ``(limit, endpoint)`` (allowed, blocked,
errors, a latency histogram), blocked counts per identity, and the most recent blocks. The
background flusher folds each batch of raw events into a fresh Aggregate (:func:`fold`) and
hands it to a sink: the in-process sink merges it into its running total, the Redis sink adds
it to shared counters. Either way, readers get a :class:`Snapshot`, which
:func:`snapshot_to_json` turns into the ``/metrics.json`` document and
:mod:`flux.analytics.prometheus` into the Prometheus text format.

Counts are floats: each sampled event weighs ``1 / sample_rate``, so totals estimate the real
number of decisions. With ``sample_rate = 1`` every count is a whole number.
"""

from __future__ import annotations

import math
import re
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from flux.identity import HASH_HEX_CHARS
from flux.identity import hash_identity as digest

__all__ = [
    "LATENCY_BUCKETS",
    "RECENT_BLOCKS",
    "Aggregate",
    "Counts",
    "RawEvent",
    "Snapshot",
    "fold",
    "hash_identity",
    "quantile",
    "snapshot_to_json",
]

# Upper bounds (seconds) of the decision latency histogram: an embedded-store decision takes a
# few microseconds, a Redis one tens of microseconds to milliseconds. +Inf is implied.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)
# How many recent blocks are kept (per process, and in the shared Redis list).
RECENT_BLOCKS = 50
# Identities shown as "top blocked" by default.
TOP_BLOCKED = 10
# Seconds of per-second history kept (the dashboard's chart, the rates).
HISTORY_SECONDS = 60
# Per-second counts are shown up to this many seconds ago: events reach the sink one flush
# interval (0.5 s) after they happen, so the latest second is still filling up.
SETTLE_SECONDS = 2
# Rates are averaged over this many settled seconds.
RATE_WINDOW = 10
# Name used for decisions recorded without a limit name.
DEFAULT_LIMIT = "default"

# What record() appends: (time, limit, endpoint, result, latency_s, identity, error).
RawEvent = tuple[
    float, Optional[str], Optional[str], Any, float, Optional[str], Optional[BaseException]
]

# Same digest as flux.identity.hash_identity: sha256, first 128 bits in hex.
_DIGEST = re.compile(f"[0-9a-f]{{{HASH_HEX_CHARS}}}")


def hash_identity(identity: str) -> str:
    """The identity's sha256 digest (32 hex characters), unless it already is one.

    The decorator hashes identities itself when ``hash_keys`` is on (flux.identity); hashing
    only what is not yet a digest keeps the identity shown by analytics equal to the one in the
    store's key, so it can be reset by hand.
    """
    if _DIGEST.fullmatch(identity):
        return identity
    return digest(identity)


@dataclass
class Counts:
    """Weighted counts of one ``(limit, endpoint)`` pair.

    ``buckets[i]`` counts latencies in ``(LATENCY_BUCKETS[i-1], LATENCY_BUCKETS[i]]``; the last
    one counts those above every bound (not cumulative; the Prometheus renderer cumulates).
    ``limit`` is the quota's capacity as last reported by a decision (``None``: unknown).
    """

    allowed: float = 0.0
    blocked: float = 0.0
    errors: float = 0.0
    latency_sum: float = 0.0
    latency_count: float = 0.0
    buckets: list[float] = field(default_factory=lambda: [0.0] * (len(LATENCY_BUCKETS) + 1))
    limit: int | None = None

    @property
    def total(self) -> float:
        """Decisions made (allowed + blocked); errors are counted apart."""
        return self.allowed + self.blocked

    @property
    def block_rate(self) -> float:
        """Share of decisions that were blocked (0 when there were none)."""
        total = self.total
        return self.blocked / total if total else 0.0

    def merge(self, other: Counts) -> None:
        """Add ``other``'s counts to these (the newer ``limit`` wins)."""
        self.allowed += other.allowed
        self.blocked += other.blocked
        self.errors += other.errors
        self.latency_sum += other.latency_sum
        self.latency_count += other.latency_count
        for i, value in enumerate(other.buckets):
            self.buckets[i] += value
        if other.limit is not None:
            self.limit = other.limit


@dataclass
class Aggregate:
    """Counts per ``(limit, endpoint)``, blocked counts per identity, and recent blocks.

    ``blocked_by`` maps a limit name to ``{identity: weighted blocked count}``; ``recent`` holds
    the newest blocks last, as dicts (time, limit, endpoint, identity, remaining, retry_after);
    ``per_second`` maps an epoch second to ``[allowed, blocked]`` (all limits together).
    """

    counts: dict[tuple[str, str], Counts] = field(default_factory=dict)
    blocked_by: dict[str, dict[str, float]] = field(default_factory=dict)
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_BLOCKS))
    per_second: dict[int, list[float]] = field(default_factory=dict)
    events: int = 0

    def counts_for(self, limit: str, endpoint: str) -> Counts:
        """The counts of one pair, created empty on first use."""
        key = (limit, endpoint)
        found = self.counts.get(key)
        if found is None:
            found = self.counts[key] = Counts()
        return found

    def merge(self, other: Aggregate) -> None:
        """Add ``other`` (a newer batch) to this aggregate."""
        for key, counts in other.counts.items():
            self.counts_for(*key).merge(counts)
        for limit, identities in other.blocked_by.items():
            mine = self.blocked_by.setdefault(limit, {})
            for identity, count in identities.items():
                mine[identity] = mine.get(identity, 0.0) + count
        self.recent.extend(other.recent)
        for second, (allowed, blocked) in other.per_second.items():
            mine_second = self.per_second.get(second)
            if mine_second is None:
                self.per_second[second] = [allowed, blocked]
            else:
                mine_second[0] += allowed
                mine_second[1] += blocked
        self.events += other.events

    def prune(self, keep: int) -> None:
        """Keep the ``keep`` most blocked identities of each limit (when it has twice as many)."""
        for limit, identities in self.blocked_by.items():
            if len(identities) > 2 * keep:
                top = sorted(identities.items(), key=lambda item: -item[1])[:keep]
                self.blocked_by[limit] = dict(top)

    def forget_before(self, second: int) -> None:
        """Drop the per-second history older than ``second``."""
        for old in [s for s in self.per_second if s < second]:
            del self.per_second[old]


def _decision(result: Any) -> tuple[bool, Any]:
    """``(allowed, result or None)`` for whatever ``record`` was given as a result."""
    if result.__class__ is bool:
        return result, None
    return bool(getattr(result, "allowed", True)), result


def fold(events: Iterable[RawEvent], weight: float = 1.0, *, hash_keys: bool = False) -> Aggregate:
    """Aggregate raw events (what :func:`flux.analytics.record` buffered), each of ``weight``.

    ``result`` may be a :class:`~flux.RateLimitResult`, anything with ``allowed`` /
    ``remaining`` / ``limit`` attributes, or a bool. An event with ``error`` set counts as an
    error, not as a decision. A missing limit name counts as ``"default"``. Identities are
    digested when ``hash_keys`` (see :func:`hash_identity`).

    Runs in the flusher thread, so it is written for speed: whole counts per key first, scaled
    by ``weight`` once at the end.
    """
    aggregate = Aggregate()
    nbuckets = len(LATENCY_BUCKETS) + 1
    bounds = LATENCY_BUCKETS
    # (limit, endpoint) -> [allowed, blocked, errors, latency sum, latency n, last result, buckets]
    acc: dict[tuple[Any, Any], list[Any]] = {}
    seconds: dict[int, list[int]] = {}
    second_start = -2.0  # the second `per_second` counts (none yet)
    per_second = [0, 0]
    blocked_by = aggregate.blocked_by
    # Only the last RECENT_BLOCKS blocks are kept: build their dicts at the end.
    blocks: deque[tuple[Any, ...]] = deque(maxlen=RECENT_BLOCKS)
    digests: dict[str, str] = {}
    n = 0
    for when, limit, endpoint, result, latency, identity, error in events:
        n += 1
        key = (limit, endpoint)
        a = acc.get(key)
        if a is None:
            a = acc[key] = [0, 0, 0, 0.0, 0, None, [0] * nbuckets]
        if latency >= 0.0:
            a[3] += latency
            a[4] += 1
            a[6][bisect_left(bounds, latency)] += 1
        if error is not None:
            a[2] += 1
            continue
        try:
            allowed = result.allowed
        except AttributeError:
            allowed, result = _decision(result)
        if result is not None:
            a[5] = result
        if not second_start <= when < second_start + 1.0:  # events come in time order
            second = int(when)
            second_start = float(second)
            known = seconds.get(second)
            if known is None:
                known = seconds[second] = [0, 0]
            per_second = known
        if allowed:
            a[0] += 1
            per_second[0] += 1
            continue
        a[1] += 1
        per_second[1] += 1
        limit = limit or DEFAULT_LIMIT
        if identity is not None:
            if hash_keys:
                digest = digests.get(identity)
                if digest is None:
                    digest = digests[identity] = hash_identity(identity)
                identity = digest
            per_limit = blocked_by.get(limit)
            if per_limit is None:
                per_limit = blocked_by[limit] = {}
            per_limit[identity] = per_limit.get(identity, 0.0) + weight
        blocks.append((when, limit, endpoint, identity, result))
    aggregate.events = n
    aggregate.per_second = {
        second: [allowed_n * weight, blocked_n * weight]
        for second, (allowed_n, blocked_n) in seconds.items()
    }
    aggregate.recent.extend(
        {
            "time": when,
            "limit": limit,
            "endpoint": endpoint or "",
            "identity": identity,
            "remaining": getattr(result, "remaining", None),
            "retry_after": getattr(result, "retry_after", None),
        }
        for when, limit, endpoint, identity, result in blocks
    )
    for (limit, endpoint), (
        allowed_n,
        blocked_n,
        errors_n,
        lsum,
        lcount,
        last,
        buckets,
    ) in acc.items():
        counts = aggregate.counts_for(limit or DEFAULT_LIMIT, endpoint or "")
        counts.allowed += allowed_n * weight
        counts.blocked += blocked_n * weight
        counts.errors += errors_n * weight
        counts.latency_sum += lsum * weight
        counts.latency_count += lcount * weight
        for i, count in enumerate(buckets):
            if count:
                counts.buckets[i] += count * weight
        quota = getattr(last, "limit", None)
        if quota:
            counts.limit = int(quota)
    return aggregate


def quantile(q: float, buckets: Sequence[float]) -> float | None:
    """Estimate the ``q`` quantile (0..1) of a latency histogram, as PromQL's
    histogram_quantile does: linear within the bucket, the top bound for the +Inf bucket.

    ``None`` when the histogram is empty.
    """
    total = sum(buckets)
    if total <= 0:
        return None
    rank = q * total
    seen = 0.0
    for i, count in enumerate(buckets):
        if count and seen + count >= rank:
            if i >= len(LATENCY_BUCKETS):
                return LATENCY_BUCKETS[-1]
            lower = LATENCY_BUCKETS[i - 1] if i else 0.0
            upper = LATENCY_BUCKETS[i]
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
    return LATENCY_BUCKETS[-1]


@dataclass
class Snapshot:
    """Everything a view shows, read at ``generated_at`` from one source.

    ``source`` is ``"memory"`` (this process only) or ``"redis"`` (every worker sharing the
    Redis). ``store_up`` is the store's health (``None``: not checked). ``workers`` counts
    processes that reported recently (Redis only). ``breakers`` maps a circuit breaker state to
    the number of workers reporting it. ``stream_length`` is the length of the event stream.
    """

    source: str
    aggregate: Aggregate
    generated_at: float = field(default_factory=time.time)
    store_up: bool | None = None
    workers: int | None = None
    stream_length: int | None = None
    dropped: float = 0.0
    breakers: dict[str, int] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def _number(value: float) -> float | int:
    """A count for JSON: an int when whole, else rounded to 3 decimals."""
    if math.isfinite(value) and value == int(value):
        return int(value)
    return round(value, 3)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 4)


def _counts_json(counts: Counts) -> dict[str, Any]:
    mean = counts.latency_sum / counts.latency_count if counts.latency_count else None
    return {
        "allowed": _number(counts.allowed),
        "blocked": _number(counts.blocked),
        "errors": _number(counts.errors),
        "total": _number(counts.total),
        "block_rate": round(counts.block_rate, 6),
        "limit": counts.limit,
        "latency_ms": {
            "mean": _ms(mean),
            "p50": _ms(quantile(0.5, counts.buckets)),
            "p99": _ms(quantile(0.99, counts.buckets)),
        },
    }


def top_blocked(blocked_by: Mapping[str, Mapping[str, float]], n: int) -> list[dict[str, Any]]:
    """The ``n`` (limit, identity) pairs with the most blocks, most blocked first."""
    rows = [
        (count, limit, identity)
        for limit, identities in blocked_by.items()
        for identity, count in identities.items()
    ]
    rows.sort(key=lambda row: (-row[0], row[1], row[2]))
    return [
        {"limit": limit, "identity": identity, "blocked": _number(count)}
        for count, limit, identity in rows[:n]
    ]


def timeline_seconds(now: float) -> range:
    """The epoch seconds the timeline covers at time ``now`` (oldest first)."""
    last = int(now) - SETTLE_SECONDS
    return range(last - HISTORY_SECONDS + 1, last + 1)


def _timeline(per_second: Mapping[int, Sequence[float]], now: float) -> dict[str, Any]:
    seconds = timeline_seconds(now)
    empty = (0.0, 0.0)
    rows = [per_second.get(second, empty) for second in seconds]
    return {
        "start": seconds.start,
        "allowed": [_number(row[0]) for row in rows],
        "blocked": [_number(row[1]) for row in rows],
    }


def _rates(timeline: Mapping[str, Any]) -> dict[str, Any]:
    allowed = sum(timeline["allowed"][-RATE_WINDOW:])
    blocked = sum(timeline["blocked"][-RATE_WINDOW:])
    return {
        "window_s": RATE_WINDOW,
        "decisions": round((allowed + blocked) / RATE_WINDOW, 3),
        "blocked": round(blocked / RATE_WINDOW, 3),
    }


def snapshot_to_json(
    snapshot: Snapshot, *, limit: str | None = None, top: int = TOP_BLOCKED
) -> dict[str, Any]:
    """The ``/metrics.json`` document (``limit``: only that limit, as ``/stats/<limit>``).

    Keys: ``generated_at``, ``source``, ``store`` (up, workers, stream_length, dropped,
    breakers), ``totals`` (allowed, blocked, errors, total, block_rate), ``rates`` (decisions
    and blocked per second over the last ``window_s`` settled seconds), ``timeline``
    (``start`` second, then ``allowed`` and ``blocked`` per second for the last 60 seconds,
    all limits together; both ``rates`` and ``timeline`` ignore the ``limit`` argument),
    ``limits`` (per limit
    name: the same counts plus ``limit``, the capacity), ``endpoints`` (a list, one item per
    limit and endpoint: ``name``, ``endpoint``, counts, ``block_rate``, ``limit``,
    ``latency_ms`` {mean, p50, p99}), ``top_blocked`` (limit, identity, blocked) and
    ``recent_blocks`` (newest first: time, limit, endpoint, identity, remaining, retry_after).
    """
    aggregate = snapshot.aggregate
    endpoints: list[dict[str, Any]] = []
    limits: dict[str, Counts] = {}
    totals = Counts()
    for (name, endpoint), counts in sorted(aggregate.counts.items()):
        if limit is not None and name != limit:
            continue
        endpoints.append({"name": name, "endpoint": endpoint, **_counts_json(counts)})
        limits.setdefault(name, Counts()).merge(counts)
        totals.merge(counts)
    blocked_by = aggregate.blocked_by
    if limit is not None:
        blocked_by = {limit: blocked_by.get(limit, {})}
    recent = [r for r in aggregate.recent if limit is None or r["limit"] == limit]
    total_json = _counts_json(totals)
    del total_json["limit"]
    timeline = _timeline(aggregate.per_second, snapshot.generated_at)
    return {
        "generated_at": snapshot.generated_at,
        "source": snapshot.source,
        "store": {
            "up": snapshot.store_up,
            "workers": snapshot.workers,
            "stream_length": snapshot.stream_length,
            "dropped": _number(snapshot.dropped),
            "breakers": dict(snapshot.breakers),
            **snapshot.info,
        },
        "totals": total_json,
        "rates": _rates(timeline),
        "timeline": timeline,
        "limits": {name: _counts_json(counts) for name, counts in limits.items()},
        "endpoints": endpoints,
        "top_blocked": top_blocked(blocked_by, top),
        "recent_blocks": list(reversed(recent)),
    }
