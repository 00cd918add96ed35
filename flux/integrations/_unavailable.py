"""The answer to a request no limit could decide: the store is unreachable and the limit fails
closed (``fail_silently = false``).

Not a 500 with a traceback: a **503** with ``Retry-After``, the same JSON shape as a 429, or
whatever the application's ``on_unavailable(request, error)`` hook returns. The outage itself
is logged by the store, once per state change (its circuit breaker); the error's message names
the limit, never the client's identity.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flux.exceptions import ConnectionError as StoreUnavailable
from flux.headers import RETRY_AFTER
from flux.integrations._common import Integration, RequestState

__all__ = [
    "SERVICE_UNAVAILABLE",
    "OnUnavailable",
    "StoreUnavailable",
    "Unavailable",
    "unavailable_body",
]

SERVICE_UNAVAILABLE = 503
#: Seconds a client is told to wait: the circuit breaker probes Redis about once a second.
RETRY_AFTER_S = 1

OnUnavailable = Callable[[Any, Exception], Any]


def unavailable_body(retry_after: int = RETRY_AFTER_S) -> dict[str, Any]:
    """The JSON body of a 503, telling the same wait as ``Retry-After``."""
    return {
        "error": "Service Unavailable",
        "retry_after": retry_after,
        "detail": f"The rate limiter cannot decide now. Try again in {retry_after} seconds.",
    }


class Unavailable:
    """Stands where a :class:`~flux.integrations._check.Check` would: always denied, and its
    response is a 503 (the faces that answer 429s answer this the same way)."""

    __slots__ = ("error", "hook", "request", "state")

    denied = True

    def __init__(
        self,
        error: StoreUnavailable | ValueError,
        request: Any,
        hook: OnUnavailable | None,
        state: RequestState | None,
    ) -> None:
        """``hook`` builds the response instead when given (it may return None: the default)."""
        self.error = error
        self.request = request
        self.hook = hook
        self.state = state

    @property
    def applied(self) -> list[Any]:
        """No limit decided this request."""
        return []

    def deny(self, integration: Integration) -> Any:
        """The framework's 503 response (or the hook's)."""
        if self.hook is not None:
            response = self.hook(self.request, self.error)
            if response is not None:
                return response
        headers = {RETRY_AFTER: str(RETRY_AFTER_S)}
        return integration.denied(unavailable_body(), headers, status=SERVICE_UNAVAILABLE)

    def header_items(self, raw: bool = False) -> list[tuple[Any, Any]]:
        """No limit decided: no rate-limit headers (never reached: the request is denied)."""
        return []

    def exception(self) -> StoreUnavailable | ValueError:
        """A plain function call has no response to make: it raises the store's error."""
        return self.error
