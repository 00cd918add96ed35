"""The process-wide Redis stores behind ``RateLimiter`` when ``storage = "redis"``.

Every limiter built from the same ``[redis]`` section, ``[flux] key_prefix`` and ``[flux]
fail_silently`` shares one :class:`flux._flux.RedisStore`: one connection pool, one circuit
breaker, one deny cache and one set of I/O threads per process, however many limits there are.
A forked child (gunicorn workers) gets fresh connections and threads by itself: the native
store rebuilds its internals after a fork.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from flux import _flux
from flux.config import STORAGE_REDIS, FluxConfig, RedisConfig, get_config
from flux.exceptions import ConfigError, ConnectionError

__all__ = ["clear_stores", "preload_scripts", "shared_store", "store_options"]

logger = logging.getLogger("flux")

_StoreKey = tuple[RedisConfig, str, bool]

_lock = threading.Lock()
_stores: dict[_StoreKey, _flux.RedisStore] = {}


def store_options(redis: RedisConfig, key_prefix: str, fail_silently: bool) -> dict[str, Any]:
    """The :class:`flux._flux.RedisStore` keyword arguments for a ``[redis]`` section.

    ``url``, when set, is authoritative (host, port, password and db are not passed: the URL
    carries its own). ``cluster`` is either a flag or the seed nodes.
    """
    options: dict[str, Any] = {
        "pool_size": redis.pool_size,
        "timeout_ms": redis.timeout_ms,
        "key_prefix": key_prefix,
        "fail_silently": fail_silently,
    }
    if redis.url is not None:
        options["url"] = redis.url
    else:
        options.update(host=redis.host, port=redis.port, password=redis.password, db=redis.db)
    if isinstance(redis.cluster, tuple):
        options["nodes"] = list(redis.cluster)
    else:
        options["cluster"] = bool(redis.cluster)
    return options


def shared_store(config: FluxConfig) -> _flux.RedisStore:
    """The store for ``config`` (created on first use, then shared by the whole process).

    Raises :class:`ConfigError` when the ``[redis]`` settings cannot make a store (a scheme
    this build does not support, a database number on a cluster, ...). A server that is down
    is not an error here: hits fail open or raise as ``fail_silently`` says.
    """
    key: _StoreKey = (config.redis, config.flux.key_prefix, config.flux.fail_silently)
    store = _stores.get(key)
    if store is not None:
        return store
    with _lock:
        store = _stores.get(key)
        if store is None:
            try:
                store = _flux.RedisStore(**store_options(*key))
            except ValueError as exc:
                raise ConfigError(str(exc), path=config.path, key="redis") from None
            _stores[key] = store
        return store


def clear_stores() -> None:
    """Forget the shared stores (limiters already built keep theirs). For tests."""
    with _lock:
        _stores.clear()


def preload_scripts(config: FluxConfig | None = None) -> int:
    """Load flux's Lua scripts into the configured Redis now; returns how many were loaded.

    flux-limiter 0.1.19 asked for this at start-up (``@app.on_event("startup")``). It is
    optional in flux: a hit whose script Redis does not have loads it by itself. On the
    embedded store there is nothing to load: returns 0. ``config`` defaults to
    :func:`flux.get_config`. When Redis cannot be reached it raises
    :class:`flux.ConnectionError` if ``fail_silently`` is false; otherwise it logs a warning
    and returns 0, so the application starts and its hits fail open as configured.
    """
    config = config if config is not None else get_config()
    if config.storage != STORAGE_REDIS:
        return 0
    store = shared_store(config)
    try:
        return store.load_scripts()
    except ConnectionError as exc:
        if not config.flux.fail_silently:
            raise
        logger.warning("preload_scripts: Redis at %s: %s", store.target, exc)
        return 0
