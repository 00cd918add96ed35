"""What every framework integration provides, and the parts of a response they share.

An :class:`Integration` reads a request (peer address, headers, user, method, path), keeps a
per-request :class:`RequestState` (so a middleware and a decorator on the same request report
every limit that applied), and builds the framework's own responses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flux.headers import AppliedLimit

__all__ = ["DUCK", "Integration", "RequestState", "denied_body"]

TOO_MANY_REQUESTS = 429
ERROR_TEXT = "Too Many Requests"


def denied_body(retry_after: int) -> dict[str, Any]:
    """The JSON body of a 429 (README, "Web frameworks"): the same wait as ``Retry-After``."""
    return {
        "error": ERROR_TEXT,
        "retry_after": retry_after,
        "detail": f"Rate limit exceeded. Try again in {retry_after} seconds.",
    }


@dataclass
class RequestState:
    """Limits already applied to the request being handled (by a middleware).

    A decorated view adds its own limits to ``applied`` when it writes the headers and sets
    ``decorated``, so the middleware then leaves the headers alone.

    ``pending`` is a middleware's rule not yet counted: when the request goes to a view with
    limits of its own, the middleware leaves its hit to the view, which counts it together
    with its own limits in one all-or-nothing hit (a request the view refuses costs the
    middleware's limit nothing).
    """

    applied: list[AppliedLimit] = field(default_factory=list)
    decorated: bool = False
    pending: Any = None


class Integration:
    """How flux reads one framework's requests and builds its responses."""

    name: str = "generic"
    #: Whether :meth:`add_header_items` takes lower-cased bytes pairs (an ASGI header list).
    raw_headers: bool = False

    def is_request(self, obj: Any) -> bool:
        """Whether ``obj`` is a request of this framework."""
        return False

    def peer(self, request: Any) -> str | None:
        """The socket peer address (never taken from a header)."""
        return None

    def header(self, request: Any, name: str) -> str | None:
        """The value of header ``name`` (repeated headers joined with ``", "``), or None."""
        return None

    def user_id(self, request: Any) -> str | None:
        """The authenticated user's id, or None for anonymous requests."""
        return None

    def method(self, request: Any) -> str:
        """The HTTP method, upper case."""
        return "GET"

    def path(self, request: Any) -> str:
        """The request path."""
        return "/"

    def state(self, request: Any) -> RequestState | None:
        """The state a middleware attached to ``request``, if any."""
        return None

    def set_state(self, request: Any, state: RequestState) -> None:
        """Attach ``state`` to ``request`` for the rest of its handling."""

    def denied(
        self, body: dict[str, Any], headers: Mapping[str, str], status: int = TOO_MANY_REQUESTS
    ) -> Any:
        """The framework's JSON 429 response (``status``: 503 when no limit could decide)."""
        raise NotImplementedError

    def add_headers(
        self, request: Any, response: Any, headers: Mapping[str, str], sub_response: Any = None
    ) -> Any:
        """Add ``headers`` to what a view returned; returns what the view should return."""
        return response

    def add_header_items(
        self, request: Any, response: Any, items: list[tuple[Any, Any]], sub_response: Any = None
    ) -> Any:
        """:meth:`add_headers` for ``(name, value)`` pairs, as a decorated view adds them on
        every allowed request (bytes when :attr:`raw_headers`)."""
        return self.add_headers(request, response, dict(items), sub_response)

    def as_response(self, returned: Any) -> Any:
        """What a view returned, as the framework's response object where it has one
        (Flask views may return a tuple), for ``deduct_when`` and ``on_limited`` to read."""
        return returned

    def app_limited_response(self, request: Any, error: Any) -> Any:
        """The application's own answer to a refused request, from the framework's error
        handling (a handler registered for :class:`~flux.RateLimitExceeded` or for 429);
        None when it has none. May be awaitable."""
        return None

    def run_awaitable(self, awaitable: Any) -> Any:
        """Run an async handler's result from a sync view (where the framework can)."""
        close = getattr(awaitable, "close", None)
        if close is not None:
            close()
        raise TypeError(
            "an async on_limited or error handler cannot answer a sync view; make it a plain "
            "function"
        )


def _duck_attr(obj: Any, *names: str) -> Any:
    for name in names:
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj


class _Duck(Integration):
    """Any request-like object, read by duck typing (flux-limiter's ``get_ip`` did this)."""

    name = "duck"

    def peer(self, request: Any) -> str | None:
        """``client.host``, ``remote_addr`` or ``META["REMOTE_ADDR"]``, whichever exists."""
        host = _duck_attr(request, "client", "host") or getattr(request, "remote_addr", None)
        if host:
            return str(host)
        meta = getattr(request, "META", None)
        return meta.get("REMOTE_ADDR") if isinstance(meta, Mapping) else None

    def header(self, request: Any, name: str) -> str | None:
        """From a ``headers`` mapping, if the object has one."""
        headers = getattr(request, "headers", None)
        return headers.get(name) if isinstance(headers, Mapping) else None


DUCK = _Duck()
