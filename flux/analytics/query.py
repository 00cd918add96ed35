"""Read-only statistics per limit and per identity, from Python (what ``/stats`` serves)."""

from __future__ import annotations

from typing import Any

from flux._redis_py import redis_target
from flux._shared import region_path
from flux.analytics.aggregate import Aggregate, Snapshot
from flux.analytics.area import area_path
from flux.analytics.lifecycle import current
from flux.analytics.recorder import LiveSource
from flux.analytics.server import Source, stats_document
from flux.analytics.shared_sink import SharedReader
from flux.analytics.sinks import MemorySink, RedisReader
from flux.config import STORAGE_REDIS, STORAGE_SHARED, FluxConfig, get_config

__all__ = ["snapshot", "stats"]


class _Empty:
    """No analytics in this process and no Redis to read: nothing recorded."""

    def snapshot(self) -> Snapshot:
        return Snapshot(source="memory", aggregate=Aggregate(), workers=0)

    def blocked_count(self, identity: str, limit: str | None = None) -> dict[str, float]:
        return {}


def _source(config: FluxConfig | None) -> tuple[Source, Any]:
    """The source to read, and a client to close afterwards (or None)."""
    recorder = current()
    if config is None and recorder is not None:
        return LiveSource(recorder), None
    config = config if config is not None else get_config()
    if config.storage == STORAGE_REDIS:
        client = redis_target(config).connect()
        return RedisReader(client, config.analytics.stream), client
    if config.storage == STORAGE_SHARED:
        return SharedReader(area_path(region_path(config))), None
    if recorder is not None and isinstance(recorder.sink, MemorySink):
        return LiveSource(recorder), None
    return _Empty(), None


def snapshot(config: FluxConfig | None = None) -> Snapshot:
    """Everything recorded so far: this process's recorder (its pending events flushed first;
    on a shared region, summed with every other process of the region), or, with ``config``
    naming a Redis or shared store, the totals of every process using it."""
    source, client = _source(config)
    try:
        return source.snapshot()
    finally:
        if client is not None:
            client.close()


def stats(
    limit: str | None = None, *, identity: str | None = None, config: FluxConfig | None = None
) -> dict[str, Any]:
    """Statistics as a dict (the ``/metrics.json`` document, see
    :func:`~flux.analytics.aggregate.snapshot_to_json`), for one ``limit`` or all of them.

    ``identity`` adds ``"identity": {"identity", "blocked", "by_limit"}``: how often that
    identity was blocked, per limit (give it as the limit saw it: a digest when ``hash_keys``).
    """
    source, client = _source(config)
    try:
        return stats_document(source, limit, identity)
    finally:
        if client is not None:
            client.close()
