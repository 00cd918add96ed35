"""Which sink a config's recorder writes to, and how it reads the store's circuit breaker.

The analytics follow the store (docs/architecture.md, "Stores"): events go where every process
that shares the limits can sum them. In-process for the embedded store; Redis (shared by every
worker) for the Redis store; the region's analytics file (summed over its processes) for the
shared store, and for a pre-fork server's own region. Pure choices from a
:class:`~flux.config.FluxConfig`: no process-wide state (that is
:mod:`flux.analytics.lifecycle`'s, the only caller).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flux import _prefork
from flux._redis_py import redis_target
from flux._shared import region_path
from flux.analytics.shared_sink import SharedSink
from flux.analytics.sinks import MemorySink, RedisSink, Sink
from flux.config import STORAGE_MEMORY, STORAGE_REDIS, STORAGE_SHARED, FluxConfig

__all__ = ["shared_region_path", "sink_for", "store_probe"]


def store_probe(config: FluxConfig) -> Callable[[], str | None] | None:
    """On the Redis store, the probe of its circuit breaker: every worker then reports the
    breaker's real state in its heartbeat (``flux_breaker_state`` on /metrics)."""
    if config.storage != STORAGE_REDIS:
        return None

    def breaker_state() -> str | None:
        # Imported when first probed: only a Redis config gets here, so other configs never
        # import the process-wide Redis stores through analytics.
        from flux._redis import shared_store

        return str(shared_store(config).breaker_state)

    return breaker_state


def shared_region_path(config: FluxConfig) -> Path | None:
    """The region whose processes this one counts with: ``[shared]``'s, or (no storage
    configured) the region of this pre-fork server's workers, as ``RateLimiter`` chooses it."""
    if config.storage == STORAGE_SHARED:
        return region_path(config)
    if (
        config.storage == STORAGE_MEMORY
        and not config.storage_configured
        and config.flux.max_keys is None
    ):
        region = _prefork.server_region()
        if region is not None:
            return Path(region.path)
    return None


def sink_for(config: FluxConfig) -> Sink:
    """In-process for the embedded store; Redis (shared by every worker) for the Redis store;
    the region's analytics file (summed over its processes) for the shared store."""
    if config.storage == STORAGE_REDIS:
        redis = config.redis
        client = redis_target(config).connect(timeout=max(redis.timeout_ms / 1000.0, 2.0))
        analytics = config.analytics
        return RedisSink(
            client, analytics.stream, analytics.retention, hash_keys=config.flux.hash_keys
        )
    shared = shared_region_path(config)
    if shared is not None:
        return SharedSink(shared)
    return MemorySink()
