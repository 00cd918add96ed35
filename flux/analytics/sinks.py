"""Where flushed events go, and where views read them back.

- :class:`MemorySink`: an in-process aggregate (the embedded store's case). It sees only the
  decisions of its own process.
- :class:`~flux.analytics.shared_sink.SharedSink` (its own module): the shared-memory store's
  case, summed over every process of the region.
- :class:`RedisSink`: a Redis stream of events (``XADD <stream> MAXLEN ~ <retention>``) plus
  aggregated counters shared by every process that writes to the same Redis, written by the
  background flusher with one pipeline per flush. :class:`RedisReader` reads the counters back,
  summed over every worker.

Redis keys, all named after the stream ``S`` (``[analytics] stream``, default ``flux:events``):

================  =====  =================================================================
``S``             stream one entry per sampled event: t, limit, endpoint, allowed, remaining,
                         quota, latency_us, identity, weight, worker (and error)
``S:counters``    hash   field ``["<limit>", "<endpoint>", "<counter>"]`` (JSON) → weighted
                         count; counters: allowed, blocked, errors, latency_sum,
                         latency_count, b0..b16 (latency histogram buckets)
``S:quota``       hash   field ``["<limit>", "<endpoint>"]`` → the limit's capacity
``S:blocked:<l>`` zset   identity → weighted blocked count under limit ``l`` (top 10 000 kept)
``S:recent``      list   the last 50 blocks, newest first (JSON)
``S:workers``     hash   ``host:pid`` → JSON heartbeat (time, dropped events, breaker state)
``S:ts:<second>`` hash   allowed, blocked: decisions in that epoch second (expire after 5 min)
================  =====  =================================================================

The stream is trimmed with ``MAXLEN ~``: Redis drops whole radix-tree nodes, so the stream may
hold up to ``stream-node-max-entries`` (100 by default) entries more than ``retention``, never
fewer. Exact trimming (``MAXLEN =``) would cut inside a node on every XADD for no benefit to
anyone reading the stream.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from flux._redis_py import redact_url, redis_client  # re-exported: analytics, monitor
from flux.analytics.aggregate import (
    HISTORY_SECONDS,
    LATENCY_BUCKETS,
    RECENT_BLOCKS,
    Aggregate,
    RawEvent,
    Snapshot,
    hash_identity,
    timeline_seconds,
)

__all__ = [
    "TOP_KEEP",
    "MemorySink",
    "RedisReader",
    "RedisSink",
    "Sink",
    "keys_for",
    "redact_url",
    "redis_client",
    "worker_id",
]

logger = logging.getLogger("flux.analytics")

# Identities kept per limit in the "top blocked" tables (the rest is trimmed each flush).
TOP_KEEP = 10_000
# Lifetime of a per-second counter (the timeline shows the last minute).
SECOND_TTL = 300
# A worker counts as alive when it reported within this many seconds.
WORKER_TTL = 30.0
# Counter names in S:counters, in Counts order; b<i> are histogram buckets.
_FIELDS = ("allowed", "blocked", "errors", "latency_sum", "latency_count")
_BUCKET_FIELDS = tuple(f"b{i}" for i in range(len(LATENCY_BUCKETS) + 1))


def worker_id() -> str:
    """This process as a worker: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Sink(Protocol):
    """What the flusher writes to and what the views read from."""

    def write(
        self,
        events: Sequence[RawEvent],
        aggregate: Aggregate,
        weight: float,
        status: dict[str, Any] | None = None,
    ) -> None:
        """Store one batch: the raw ``events`` (each of ``weight``) and their aggregate, and
        (when given) this worker's ``status`` as :meth:`heartbeat` does."""

    def heartbeat(self, info: dict[str, Any]) -> None:
        """Report this worker alive, with ``info`` (dropped events, breaker state)."""

    def snapshot(self) -> Snapshot:
        """Everything recorded so far, as one :class:`Snapshot`."""

    def close(self) -> None:
        """Release connections."""


class MemorySink:
    """An in-process aggregate: totals of this process only."""

    def __init__(self) -> None:
        """Start empty."""
        self._lock = threading.Lock()
        self._total = Aggregate()
        self._info: dict[str, Any] = {}

    def write(
        self,
        events: Sequence[RawEvent],
        aggregate: Aggregate,
        weight: float,
        status: dict[str, Any] | None = None,
    ) -> None:
        """Merge the batch's aggregate into the running total."""
        with self._lock:
            self._total.merge(aggregate)
            self._total.prune(TOP_KEEP)
            self._total.forget_before(int(time.time()) - 2 * HISTORY_SECONDS)
            if status is not None:
                self._info = dict(status)

    def heartbeat(self, info: dict[str, Any]) -> None:
        """Keep this process's own status (dropped events, breaker state)."""
        with self._lock:
            self._info = dict(info)

    def snapshot(self) -> Snapshot:
        """A copy of the running total."""
        copy = Aggregate()
        with self._lock:
            copy.merge(self._total)
            info = dict(self._info)
        breaker = info.get("breaker")
        return Snapshot(
            source="memory",
            aggregate=copy,
            store_up=True,
            workers=1,
            dropped=float(info.get("dropped", 0.0)),
            breakers={breaker: 1} if breaker else {},
        )

    def blocked_count(self, identity: str, limit: str | None = None) -> dict[str, float]:
        """Blocked count of ``identity`` per limit (only ``limit`` when given)."""
        with self._lock:
            return {
                name: identities[identity]
                for name, identities in self._total.blocked_by.items()
                if (limit is None or name == limit) and identity in identities
            }

    def clear(self) -> None:
        """Forget everything recorded so far."""
        with self._lock:
            self._total = Aggregate()

    def close(self) -> None:
        """Nothing to release."""


# --- Redis -----------------------------------------------------------------------------------


class _Keys:
    """The Redis keys of one analytics stream (see the module doc)."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.counters = f"{stream}:counters"
        self.quota = f"{stream}:quota"
        self.recent = f"{stream}:recent"
        self.workers = f"{stream}:workers"
        self.blocked_prefix = f"{stream}:blocked:"
        self.second_prefix = f"{stream}:ts:"

    def second(self, epoch_second: int) -> str:
        return f"{self.second_prefix}{epoch_second}"

    def blocked(self, limit: str) -> str:
        return f"{self.blocked_prefix}{limit}"


def keys_for(stream: str) -> tuple[str, str]:
    """The analytics stream's own key and the prefix of its other keys (for ``flux clear``)."""
    return stream, f"{stream}:"


def _field(*parts: str) -> str:
    return json.dumps(parts, separators=(",", ":"), ensure_ascii=False)


class RedisSink:
    """Writes batches to a Redis stream and shared counters (one pipeline per flush)."""

    def __init__(
        self,
        client: Any,
        stream: str,
        retention: int,
        *,
        hash_keys: bool = False,
        worker: str | None = None,
    ) -> None:
        """``client``: a redis-py client (``decode_responses=True``); see the module doc."""
        self.client = client
        self.keys = _Keys(stream)
        self.retention = retention
        self.hash_keys = hash_keys
        self.worker = worker or worker_id()

    def write(
        self,
        events: Sequence[RawEvent],
        aggregate: Aggregate,
        weight: float,
        status: dict[str, Any] | None = None,
    ) -> None:
        """XADD every event, add the aggregate to the counters, report ``status``: one round
        trip."""
        keys = self.keys
        pipe = self.client.pipeline(transaction=False)
        digests: dict[str, str] = {}
        weight_text = repr(weight)
        for when, limit, endpoint, result, latency, identity, error in events:
            fields: dict[str, Any] = {
                "t": f"{when:.6f}",
                "limit": limit or "default",
                "endpoint": endpoint or "",
                "latency_us": int(latency * 1e6) if latency >= 0 else -1,
                "weight": weight_text,
                "worker": self.worker,
            }
            if error is not None:
                fields["allowed"] = 0
                fields["error"] = type(error).__name__
            elif isinstance(result, bool):
                fields["allowed"] = int(result)
            else:
                fields["allowed"] = int(bool(getattr(result, "allowed", True)))
                remaining = getattr(result, "remaining", None)
                quota = getattr(result, "limit", None)
                if remaining is not None:
                    fields["remaining"] = remaining
                if quota is not None:
                    fields["quota"] = quota
            if identity is not None:
                if self.hash_keys:
                    digest = digests.get(identity)
                    if digest is None:
                        digest = digests[identity] = hash_identity(identity)
                    identity = digest
                fields["identity"] = identity
            pipe.xadd(keys.stream, fields, maxlen=self.retention, approximate=True)
        self._add_counts(pipe, aggregate)
        if status is not None:
            pipe.hset(keys.workers, self.worker, self._heartbeat(status))
        pipe.execute()

    def _add_counts(self, pipe: Any, aggregate: Aggregate) -> None:
        keys = self.keys
        for (limit, endpoint), counts in aggregate.counts.items():
            values = (
                counts.allowed,
                counts.blocked,
                counts.errors,
                counts.latency_sum,
                counts.latency_count,
            )
            for name, value in zip(_FIELDS, values):
                if value:
                    pipe.hincrbyfloat(keys.counters, _field(limit, endpoint, name), value)
            for name, value in zip(_BUCKET_FIELDS, counts.buckets):
                if value:
                    pipe.hincrbyfloat(keys.counters, _field(limit, endpoint, name), value)
            if counts.limit is not None:
                pipe.hset(keys.quota, _field(limit, endpoint), counts.limit)
        for limit, identities in aggregate.blocked_by.items():
            key = keys.blocked(limit)
            for identity, count in identities.items():
                pipe.zincrby(key, count, identity)
            pipe.zremrangebyrank(key, 0, -(TOP_KEEP + 1))
        if aggregate.recent:
            pipe.lpush(keys.recent, *(json.dumps(block) for block in aggregate.recent))
            pipe.ltrim(keys.recent, 0, RECENT_BLOCKS - 1)
        for second, (allowed, blocked) in aggregate.per_second.items():
            key = keys.second(second)
            if allowed:
                pipe.hincrbyfloat(key, "allowed", allowed)
            if blocked:
                pipe.hincrbyfloat(key, "blocked", blocked)
            pipe.expire(key, SECOND_TTL)

    def heartbeat(self, info: dict[str, Any]) -> None:
        """HSET this worker's status in ``S:workers``."""
        self.client.hset(self.keys.workers, self.worker, self._heartbeat(info))

    def _heartbeat(self, info: dict[str, Any]) -> str:
        return json.dumps({"time": time.time(), "pid": os.getpid(), **info})

    def snapshot(self) -> Snapshot:
        """The shared totals (every worker), read back from Redis."""
        return RedisReader(self.client, self.keys.stream).snapshot()

    def close(self) -> None:
        """Close the client's connections."""
        close = getattr(self.client, "close", None)
        if close is not None:
            close()


class RedisReader:
    """Reads the shared analytics counters: the sum over every worker writing to this Redis."""

    def __init__(self, client: Any, stream: str, *, top: int = TOP_KEEP) -> None:
        """``client``: a redis-py client (``decode_responses=True``)."""
        self.client = client
        self.keys = _Keys(stream)
        self.top = top

    def snapshot(self, *, top: int | None = None) -> Snapshot:
        """Read everything in two round trips; a failing Redis gives an empty snapshot with
        ``store_up=False`` and the error in ``info["error"]``."""
        keys = self.keys
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.ping()
            pipe.hgetall(keys.counters)
            pipe.hgetall(keys.quota)
            pipe.lrange(keys.recent, 0, RECENT_BLOCKS - 1)
            pipe.xlen(keys.stream)
            pipe.hgetall(keys.workers)
            now = time.time()
            seconds = timeline_seconds(now)
            for second in seconds:
                pipe.hmget(keys.second(second), "allowed", "blocked")
            replies = pipe.execute()
            _, counters, quotas, recent, length, workers = replies[:6]
            aggregate = _parse_counters(counters, quotas)
            for second, (allowed, blocked) in zip(seconds, replies[6:]):
                if allowed is not None or blocked is not None:
                    aggregate.per_second[second] = [float(allowed or 0), float(blocked or 0)]
            limits = sorted({limit for limit, _ in aggregate.counts})
            wanted = self.top if top is None else top
            if limits:
                pipe = self.client.pipeline(transaction=False)
                for limit in limits:
                    pipe.zrevrange(keys.blocked(limit), 0, wanted - 1, withscores=True)
                for limit, rows in zip(limits, pipe.execute()):
                    if rows:
                        aggregate.blocked_by[limit] = {member: score for member, score in rows}
        except Exception as exc:  # redis.RedisError, OSError: the store is unreachable
            return Snapshot(
                source="redis", aggregate=Aggregate(), store_up=False, info={"error": str(exc)}
            )
        for raw in reversed(recent):
            try:
                aggregate.recent.append(json.loads(raw))
            except ValueError:
                continue
        live, dropped, breakers = _parse_workers(workers)
        return Snapshot(
            source="redis",
            aggregate=aggregate,
            generated_at=now,
            store_up=True,
            workers=live,
            stream_length=int(length),
            dropped=dropped,
            breakers=breakers,
        )

    def blocked_count(self, identity: str, limit: str | None = None) -> dict[str, float]:
        """Blocked count of ``identity`` per limit (only ``limit`` when given); empty when
        Redis does not answer."""
        keys = self.keys
        try:
            if limit is not None:
                limits = [limit]
            else:
                counters = self.client.hkeys(keys.counters)
                limits = sorted({json.loads(f)[0] for f in counters})
            pipe = self.client.pipeline(transaction=False)
            for name in limits:
                pipe.zscore(keys.blocked(name), identity)
            scores = pipe.execute()
        except Exception:  # redis.RedisError, OSError, a foreign field
            return {}
        return {name: float(score) for name, score in zip(limits, scores) if score is not None}

    def ping(self) -> bool:
        """True when Redis answers."""
        try:
            return bool(self.client.ping())
        except Exception:
            return False


def _parse_counters(counters: dict[str, str], quotas: dict[str, str]) -> Aggregate:
    aggregate = Aggregate()
    positions = {name: i for i, name in enumerate(_BUCKET_FIELDS)}
    for raw_field, raw_value in counters.items():
        try:
            limit, endpoint, name = json.loads(raw_field)
            value = float(raw_value)
        except (TypeError, ValueError):
            continue
        counts = aggregate.counts_for(limit, endpoint)
        if name in _FIELDS:
            setattr(counts, name, value)
        elif name in positions:
            counts.buckets[positions[name]] = value
    for raw_field, raw_value in quotas.items():
        try:
            limit, endpoint = json.loads(raw_field)
            aggregate.counts_for(limit, endpoint).limit = int(raw_value)
        except (TypeError, ValueError):
            continue
    return aggregate


def _parse_workers(workers: dict[str, str]) -> tuple[int, float, dict[str, int]]:
    now = time.time()
    live = 0
    dropped = 0.0
    breakers: dict[str, int] = {}
    for raw in workers.values():
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        dropped += float(record.get("dropped", 0.0))
        if now - float(record.get("time", 0.0)) > WORKER_TTL:
            continue
        live += 1
        breaker = record.get("breaker")
        if breaker:
            breakers[breaker] = breakers.get(breaker, 0) + 1
    return live, dropped, breakers
