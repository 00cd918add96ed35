"""Flask: request reading (from the request context), responses, and the ``FluxLimiter`` extension.

Views: ``@rate_limit`` goes **below** ``@app.route``/``@bp.route``; the request comes from the
active request context, so views keep their signatures. Allowed responses get the headers
through ``after_this_request``, so a view may return anything Flask accepts (and a view
called directly returns exactly what it returned).

Extension (global limits)::

    limiter = FluxLimiter(app, default=True, paths={"/api/": "api_tier_1"},
                          exempt_paths=["/static/"])
    # or, with an application factory: limiter = FluxLimiter(**options); limiter.init_app(app)
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping
from typing import Any

from flux.headers import (
    RATELIMIT,
    RATELIMIT_POLICY,
    RETRY_AFTER,
    X_RATELIMIT_LIMIT,
    X_RATELIMIT_REMAINING,
    X_RATELIMIT_RESET,
)
from flux.integrations import FrameworkNotInstalled
from flux.integrations._check import Check
from flux.integrations._common import TOO_MANY_REQUESTS, Integration, RequestState
from flux.integrations._global import GlobalLimits
from flux.integrations._policies import limited, settle

try:
    from flask import (
        Flask,
        Response,
        after_this_request,
        current_app,
        g,
        jsonify,
    )
    from flask import request as _request_proxy
    from werkzeug.datastructures import Headers
except ImportError as exc:  # pragma: no cover - exercised only without Flask
    raise FrameworkNotInstalled("flask", "flask") from exc

__all__ = ["INTEGRATION", "FlaskIntegration", "FluxLimiter", "set_headers"]

# WSGI environ key of the extension's RequestState: the environ lives exactly one request,
# and reading it is a dict lookup (flask.g goes through a context-local proxy).
_STATE_KEY = "flux.state"
# WSGI environ key of the extension's Check, kept for after_request when it gives hits back.
_CHECK_KEY = "flux.check"
EXTENSION_NAME = "flux"


class FlaskIntegration(Integration):
    """Reads the current Flask request; answers with a JSON ``Response``."""

    name = "flask"

    def current_request(self) -> Any:
        """The request of the active request context, or None outside one."""
        try:
            return _request_proxy._get_current_object()  # type: ignore[attr-defined]
        except RuntimeError:  # "Working outside of request context"
            return None

    def is_request(self, obj: Any) -> bool:
        """Flask requests are found through the context, never among arguments."""
        return False

    def peer(self, request: Any) -> str | None:
        """``REMOTE_ADDR`` as the WSGI server reports it."""
        return request.remote_addr or None

    def header(self, request: Any, name: str) -> str | None:
        """The header's values joined with ``", "``."""
        values = request.headers.getlist(name)
        return ", ".join(values) if values else None

    def user_id(self, request: Any) -> str | None:
        """Flask-Login's ``current_user`` when loaded and authenticated, else ``g.user``."""
        login = sys.modules.get("flask_login")
        if login is not None:
            user = login.current_user
            if getattr(user, "is_authenticated", False):
                value = user.get_id()
                if value is not None:
                    return str(value)
        user = g.get("user")
        if user is None or not getattr(user, "is_authenticated", True):
            return None
        for attribute in ("id", "pk", "username"):
            value = getattr(user, attribute, None)
            if value is not None:
                return str(value)
        return None

    def method(self, request: Any) -> str:
        """``request.method``."""
        return str(request.method).upper()

    def path(self, request: Any) -> str:
        """``request.path``."""
        return str(request.path)

    def state(self, request: Any) -> RequestState | None:
        """The extension's state, kept in the request's WSGI environ."""
        return request.environ.get(_STATE_KEY)

    def set_state(self, request: Any, state: RequestState) -> None:
        """Keep the extension's state in the request's WSGI environ."""
        request.environ[_STATE_KEY] = state

    def denied(
        self, body: dict[str, Any], headers: Mapping[str, str], status: int = TOO_MANY_REQUESTS
    ) -> Response:
        """``jsonify(body)`` with status 429 and the headers."""
        response = jsonify(body)
        response.status_code = status
        set_headers(response.headers, headers)
        return response

    def add_headers(
        self, request: Any, response: Any, headers: Mapping[str, str], sub_response: Any = None
    ) -> Any:
        """Add the headers once Flask has made the final response (``after_this_request``)."""
        after_this_request(functools.partial(_with_headers, list(headers.items())))
        return response

    def add_header_items(
        self, request: Any, response: Any, items: list[tuple[Any, Any]], sub_response: Any = None
    ) -> Any:
        """:meth:`add_headers` for ``(name, value)`` pairs."""
        after_this_request(functools.partial(_with_headers, items))
        return response

    def as_response(self, returned: Any) -> Any:
        """``current_app.make_response``: a view's tuple or string as a ``Response``."""
        return current_app.make_response(returned)

    def app_limited_response(self, request: Any, error: Any) -> Any:
        """The handler the application registered with ``errorhandler`` for
        ``RateLimitExceeded`` (or a base flux error) or for 429, on the request's blueprints
        first, called with ``error``; None when there is none."""
        handler = _error_handler(current_app, request, error)
        return None if handler is None else current_app.make_response(handler(error))


# Lower-cased names of every header flux writes (a response may already hold some).
_FLUX_HEADERS = frozenset(
    name.lower()
    for name in (
        RETRY_AFTER,
        X_RATELIMIT_LIMIT,
        X_RATELIMIT_REMAINING,
        X_RATELIMIT_RESET,
        RATELIMIT_POLICY,
        RATELIMIT,
    )
)


def _with_headers(items: list[tuple[str, str]], response: Response) -> Response:
    """``response`` with the header ``items`` set (an ``after_this_request`` callback)."""
    set_headers(response.headers, items)
    return response


def set_headers(target: Headers, headers: Mapping[str, str] | list[tuple[str, str]]) -> None:
    """Set flux's ``headers`` (a mapping or ``(name, value)`` pairs) on werkzeug ``Headers``,
    replacing any already there.

    ``Headers.update`` validates and rescans the list for each header, which costs more than
    the whole rate-limit decision. flux's values are digits and sf-strings of printable
    ASCII, so they need no validation: when none is present yet (the usual case) they are
    appended to the underlying list directly.
    """
    # type(...) is list, not isinstance(..., Mapping): an ABC check costs more than the rest.
    items = headers if type(headers) is list else headers.items()  # type: ignore[union-attr]
    raw = getattr(target, "_list", None)
    if type(raw) is list:
        for name, _ in raw:
            if name.lower() in _FLUX_HEADERS:
                break
        else:
            raw.extend(items)
            return
    for name, value in items:  # a header to replace, or a werkzeug without ``_list``
        target.set(name, value)


def _error_handler(app: Flask, request: Any, error: Any) -> Any:
    """``errorhandler`` lookup for ``error``, as Flask would do it, but only among handlers
    registered for flux's errors or for 429: a catch-all ``errorhandler(Exception)`` is for
    the application's failures, not for a refusal that flux answers itself."""
    from flux.exceptions import FluxError

    ours = [cls for cls in type(error).__mro__ if issubclass(cls, FluxError)]
    for scope in (*getattr(request, "blueprints", ()), None):
        handlers = app.error_handler_spec.get(scope, {})
        by_class = handlers.get(None, {})
        for cls in ours:
            if cls in by_class:
                return by_class[cls]
        by_code = handlers.get(TOO_MANY_REQUESTS, {})
        if by_code:
            return next(iter(by_code.values()))
    return None


INTEGRATION = FlaskIntegration()


class FluxLimiter:
    """Flask extension applying a default limit, or per-path limits, to every request.

    Takes the arguments of :class:`flux.middleware.GlobalLimits`; the limits are built once,
    in :meth:`init_app`. A decorated view adds its own limits to these.
    """

    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        """Keep the options; with ``app``, initialise it now."""
        self.options = options
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register the checks on ``app`` (``before_request`` / ``after_request``)."""

        limits = GlobalLimits(**self.options)
        app.extensions[EXTENSION_NAME] = limits

        def check_request() -> Any:
            request = INTEGRATION.current_request()
            # Flask has routed the request already: the view is known.
            view = current_app.view_functions.get(request.endpoint or "")
            check = limits.check(INTEGRATION, request, view)
            if check is None:
                return None
            if check.denied:
                if isinstance(check, Check):
                    return limited(check, INTEGRATION, request)
                return check.deny(INTEGRATION)
            INTEGRATION.set_state(request, RequestState(list(check.applied)))
            if limits.settles and isinstance(check, Check):
                request.environ[_CHECK_KEY] = check
            return None

        def add_headers(response: Response) -> Response:
            request = INTEGRATION.current_request()
            state = INTEGRATION.state(request) if request is not None else None
            check = request.environ.pop(_CHECK_KEY, None) if request is not None else None
            if check is not None:  # deduct_when: give back what this response does not count
                settle(check, INTEGRATION, response)
            if state is not None and not state.decorated and limits.headers_on_success:
                set_headers(response.headers, limits.headers(state.applied))
            return response

        # Run before every other before_request hook: a denied request should cost nothing.
        app.before_request_funcs.setdefault(None, []).insert(0, check_request)
        app.after_request(add_headers)
