"""The small vocabulary of errors flux raises.

Every flux error derives from :class:`FluxError`, so ``except FluxError`` catches them all.
Names and constructor signatures follow flux-limiter 0.1.19 where it had them, so code written
against it keeps working.
"""

from __future__ import annotations

import builtins
from os import PathLike
from pathlib import Path
from typing import Any

from flux.headers import ceil_seconds

__all__ = ["ConfigError", "ConnectionError", "FluxError", "RateLimitExceeded"]


class FluxError(Exception):
    """Base class of every error raised by flux."""


class RateLimitExceeded(FluxError):
    """A hit was denied because its rate limit is exhausted.

    Raised where there is no framework response to return (plain functions,
    ``RateLimiter.require``). ``retry_after`` is the number of seconds (float) until the same hit
    would be allowed. ``limit``, ``remaining`` and ``reset_after`` are filled from ``result`` when
    one is given, and are ``None`` when unknown.

    An application's own handler for it (Flask ``errorhandler``, Starlette/FastAPI
    ``exception_handler``, Django's ``FLUX_ON_LIMITED``) answers refused requests instead of
    flux's JSON 429; ``status_code`` (also ``code``, as werkzeug names it) is 429, so a handler
    shared with HTTP errors reads it the same way.
    """

    status_code = 429
    code = 429
    key: str
    retry_after: float
    result: Any
    limit: int | None
    remaining: int | None
    reset_after: float | None

    def __init__(
        self,
        key: str,
        retry_after: float = 0.0,
        message: str | None = None,
        *,
        result: Any = None,
        limit: int | None = None,
        remaining: int | None = None,
        reset_after: float | None = None,
    ) -> None:
        """Build the error for ``key``.

        ``result`` is a ``RateLimitResult`` (or any object with ``limit``, ``remaining``,
        ``reset_after`` and ``retry_after`` attributes); explicit keyword values win over it.
        """
        if result is not None:
            limit = limit if limit is not None else getattr(result, "limit", None)
            remaining = remaining if remaining is not None else getattr(result, "remaining", None)
            if reset_after is None:
                reset_after = getattr(result, "reset_after", None)
            if not retry_after:
                retry_after = getattr(result, "retry_after", None) or 0.0
        self.key = key
        self.retry_after = float(retry_after or 0.0)
        self.result = result
        self.limit = limit
        self.remaining = remaining
        self.reset_after = reset_after
        if message is None:
            message = f"Rate limit exceeded for '{key}'"
            if self.retry_after > 0:
                message += f". Retry after {self.retry_after:.1f}s"
        super().__init__(message)

    @property
    def retry_after_seconds(self) -> int:
        """``retry_after`` as whole seconds rounded up (never 0 while a wait remains)."""
        return ceil_seconds(self.retry_after)

    def to_headers(self) -> dict[str, str]:
        """HTTP headers for a 429 response.

        ``Retry-After`` is in whole seconds rounded up, so it is never earlier than the real
        retry time (flux-limiter truncated it). ``X-RateLimit-Remaining`` is ``0`` unless the
        result says otherwise; ``X-RateLimit-Limit`` and ``X-RateLimit-Reset`` (seconds until the
        key is back to full capacity, rounded up) appear when known. No jitter is added here:
        that is the response layer's job.
        """
        headers = {"Retry-After": str(self.retry_after_seconds)}
        if self.limit is not None:
            headers["X-RateLimit-Limit"] = str(self.limit)
        headers["X-RateLimit-Remaining"] = str(max(0, self.remaining or 0))
        if self.reset_after is not None:
            headers["X-RateLimit-Reset"] = str(ceil_seconds(self.reset_after))
        return headers


class ConfigError(FluxError, ValueError):
    """A configuration file or value is invalid.

    ``path`` is the file concerned (``None`` for built-in defaults, environment variables or
    values passed in code) and ``key`` the dotted key (``"rate_limits.api.period"``) or
    environment variable name; either may be ``None``. ``reason`` is the message without them.
    Subclasses :class:`ValueError` so callers that validated values with ``except ValueError``
    keep working.
    """

    path: Path | None
    key: str | None
    reason: str

    def __init__(
        self,
        reason: str,
        *,
        path: str | PathLike[str] | None = None,
        key: str | None = None,
    ) -> None:
        """Build the error; the message reads ``<path>: <key>: <reason>``."""
        self.path = Path(path) if path is not None else None
        self.key = key
        self.reason = reason
        parts = [str(self.path) if self.path is not None else None, key, reason]
        super().__init__(": ".join(p for p in parts if p))


# Shadows the builtin name on purpose: flux-limiter exported `flux.ConnectionError`.
class ConnectionError(FluxError, builtins.ConnectionError):
    """The storage backend (Redis) could not be reached or failed mid-command.

    Raised only when ``fail_silently = false``. The underlying exception is kept both as
    ``__cause__`` and as ``original``. Also a :class:`builtins.ConnectionError`, so generic
    ``except ConnectionError`` handlers that never imported flux's name still catch it.
    """

    original: BaseException | None

    def __init__(self, message: str, original: BaseException | None = None) -> None:
        """Build the error; ``original`` becomes ``__cause__`` unless it is ``None``."""
        super().__init__(message)
        self.original = original
        if original is not None:
            self.__cause__ = original

    def __str__(self) -> str:
        """The message alone (OSError would otherwise format errno-style arguments)."""
        return str(self.args[0]) if self.args else ""
