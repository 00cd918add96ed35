"""Redis as flux's tools reach it with redis-py (``flux clear``, the monitor, analytics), and a
Redis URL fit to print: one place that resolves where Redis is and connects, and one that
hides the password.

The rate limits themselves never go through here: their store is the native one
(:mod:`flux._redis`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from flux.config import FluxConfig

__all__ = ["RedisTarget", "redact_url", "redis_client", "redis_target"]

#: Seconds redis-py waits to connect and for each reply: a tool, not a request path.
TOOL_TIMEOUT_S = 2.0


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return url.replace(parts.netloc, netloc, 1)


def redis_client(url: str, *, timeout: float = TOOL_TIMEOUT_S, cluster: bool = False) -> Any:
    """A redis-py client for ``url`` (``redis://``, ``rediss://``, ``unix://``), answering str.

    Raises ImportError with the install hint when redis-py is missing.
    """
    try:
        import redis
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "flux's Redis tools need redis-py: pip install 'flux-ratelimit[redis]'"
        ) from exc
    options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if cluster:
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(url, decode_responses=True, **options)
    return redis.Redis.from_url(url, decode_responses=True, **options)


class RedisTarget(NamedTuple):
    """Where a tool finds Redis: a URL, and whether it is a cluster."""

    url: str
    cluster: bool

    @property
    def redacted(self) -> str:
        """The URL without its password, to print."""
        return redact_url(self.url)

    def connect(self, timeout: float = TOOL_TIMEOUT_S) -> Any:
        """A redis-py client for this target (see :func:`redis_client`)."""
        return redis_client(self.url, timeout=timeout, cluster=self.cluster)


def redis_target(config: FluxConfig, url: str | None = None) -> RedisTarget:
    """``url`` when given (a single server: a command line's ``--redis``), else the Redis of
    ``config``'s ``[redis]`` section (``$FLUX_REDIS_URL`` included), cluster or not."""
    if url is not None:
        return RedisTarget(url, False)
    return RedisTarget(config.redis.connection_url(), bool(config.redis.cluster))
