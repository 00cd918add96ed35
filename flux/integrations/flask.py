"""Flask: request reading (from the request context), responses, and the ``FluxLimiter`` extension.

Views: ``@rate_limit`` goes **below** ``@app.route``/``@bp.route``; the request comes from the
active request context, so views keep their signatures. Allowed responses get the headers
through ``after_this_request``, so a view may return anything Flask accepts.

Extension (global limits)::

    limiter = FluxLimiter(app, default=True, paths={"/api/": "api_tier_1"},
                          exempt_paths=["/static/"])
    # or, with an application factory: limiter = FluxLimiter(**options); limiter.init_app(app)
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from flux.integrations import FrameworkNotInstalled
from flux.integrations._common import TOO_MANY_REQUESTS, Integration, RequestState

try:
    from flask import (
        Flask,
        Response,
        after_this_request,
        g,
        has_request_context,
        jsonify,
    )
    from flask import request as _request_proxy
except ImportError as exc:  # pragma: no cover - exercised only without Flask
    raise FrameworkNotInstalled("flask", "flask") from exc

__all__ = ["INTEGRATION", "FlaskIntegration", "FluxLimiter"]

# Attribute of flask.g holding the extension's RequestState (g lives exactly one request).
_STATE_ATTR = "_flux_state"
EXTENSION_NAME = "flux"


class FlaskIntegration(Integration):
    """Reads the current Flask request; answers with a JSON ``Response``."""

    name = "flask"

    def current_request(self) -> Any:
        """The request of the active request context, or None outside one."""
        if not has_request_context():
            return None
        return _request_proxy._get_current_object()  # type: ignore[attr-defined]

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
        """The extension's state, kept on ``flask.g``."""
        return g.get(_STATE_ATTR)

    def set_state(self, request: Any, state: RequestState) -> None:
        """Keep the extension's state on ``flask.g``."""
        setattr(g, _STATE_ATTR, state)

    def denied(self, body: dict[str, Any], headers: Mapping[str, str]) -> Response:
        """``jsonify(body)`` with status 429 and the headers."""
        response = jsonify(body)
        response.status_code = TOO_MANY_REQUESTS
        response.headers.update(headers)
        return response

    def add_headers(
        self, request: Any, response: Any, headers: Mapping[str, str], sub_response: Any = None
    ) -> Any:
        """Add the headers once Flask has made the final response (``after_this_request``)."""

        def add(final: Response) -> Response:
            final.headers.update(headers)
            return final

        after_this_request(add)
        return response


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
        from flux.middleware import GlobalLimits

        limits = GlobalLimits(**self.options)
        app.extensions[EXTENSION_NAME] = limits

        def check_request() -> Any:
            request = INTEGRATION.current_request()
            check = limits.check(INTEGRATION, request)
            if check is None:
                return None
            if check.denied:
                return check.deny(INTEGRATION)
            INTEGRATION.set_state(request, RequestState(list(check.applied)))
            return None

        def add_headers(response: Response) -> Response:
            state = INTEGRATION.state(None)
            if state is not None and not state.decorated and limits.headers_on_success:
                response.headers.update(limits.headers(state.applied))
            return response

        # Run before every other before_request hook: a denied request should cost nothing.
        app.before_request_funcs.setdefault(None, []).insert(0, check_request)
        app.after_request(add_headers)
