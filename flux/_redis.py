"""The process-wide Redis stores behind ``RateLimiter`` when ``storage = "redis"``.

Every limiter built from the same ``[redis]`` section, ``[flux] key_prefix`` and ``[flux]
fail_silently`` shares one :class:`flux._flux.RedisStore`: one connection pool, one circuit
breaker, one deny cache and one set of I/O threads per process, however many limits there are.
A forked child (gunicorn workers) gets fresh connections and threads by itself: the native
store rebuilds its internals after a fork.
"""

from __future__ import annotations

import threading
from typing import Any

from flux import _flux
from flux.config import FluxConfig, RedisConfig
from flux.exceptions import ConfigError

__all__ = ["clear_stores", "shared_store", "store_options"]

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
