"""``RedisClient``: flux-limiter 0.1.19's Redis connection object, on flux's native store.

flux-limiter exported its C++ client as ``flux.RedisClient(host, port, pool_size, timeout_ms,
log_file, console_logging)``: it connected (and failed with a ``RuntimeError`` saying "Redis
Connection Failed") when built, and answered ``ping()`` with ``"PONG"``. This class keeps that
contract over a :class:`flux._flux.RedisStore`. It does not run arbitrary Lua: flux-limiter's
``load_script``/``eval_script`` only served its own scripts, which flux replaces;
:meth:`RedisClient.load_scripts` loads flux's.
"""

from __future__ import annotations

from flux import _flux
from flux._logging import apply_log_settings
from flux.exceptions import ConnectionError

__all__ = ["RedisClient", "RedisClientError"]


class RedisClientError(ConnectionError, RuntimeError):
    """Redis could not be reached by a :class:`RedisClient`.

    Both a :class:`flux.ConnectionError` (flux's way) and a :class:`RuntimeError`
    (flux-limiter's C++ client raised that), so either ``except`` catches it.
    """


class RedisClient:
    """A connection pool to one Redis server, checked when built.

    ``log_file`` and ``console_logging`` send flux's log records (logger ``"flux"``) to that
    file and to stderr, as the same ``[flux]`` keys do. Raises :class:`RedisClientError` when
    Redis does not answer within ``timeout_ms``.
    """

    store: _flux.RedisStore

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6379,
        pool_size: int = 5,
        timeout_ms: int = 200,
        log_file: str | None = None,
        console_logging: bool = False,
    ) -> None:
        """Connect to ``host:port`` and send one PING."""
        apply_log_settings(console_logging, log_file)
        self.store = _flux.RedisStore(
            host=host,
            port=port,
            pool_size=pool_size,
            timeout_ms=timeout_ms,
            fail_silently=False,
        )
        self.ping()

    def ping(self) -> str:
        """``"PONG"`` when Redis answers; raises :class:`RedisClientError` otherwise."""
        try:
            self.store.ping()
        except ConnectionError as exc:
            raise RedisClientError(
                f"Redis Connection Failed ({self.store.target}): {exc}", exc
            ) from exc
        return "PONG"

    def load_scripts(self) -> int:
        """Load flux's Lua scripts into this Redis; returns how many (see
        :func:`flux.preload_scripts`)."""
        try:
            return self.store.load_scripts()
        except ConnectionError as exc:
            raise RedisClientError(
                f"Redis Connection Failed ({self.store.target}): {exc}", exc
            ) from exc

    def __repr__(self) -> str:
        return f"RedisClient({self.store.target!r})"
