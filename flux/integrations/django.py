"""Django (and Django REST framework): request reading, responses, and a global-limit middleware.

Views: ``@rate_limit`` works on function views (sync and async), on class-based views through
``method_decorator`` or directly on ``dispatch``/``get``/..., and on DRF ``APIView`` methods and
``@api_view`` functions (where ``request.user`` is DRF's authenticated user).

Middleware: add ``"flux.integrations.django.FluxMiddleware"`` to ``MIDDLEWARE`` (after
``AuthenticationMiddleware`` for ``key="user"``) and configure it with the ``FLUX_MIDDLEWARE``
setting, a dict of :class:`flux.middleware.GlobalLimits` arguments::

    FLUX_MIDDLEWARE = {
        "default": True,                       # the [rate_limit] section of flux.toml
        "paths": {"/api/": "api_tier_1"},      # [rate_limits.api_tier_1] for /api/...
        "exempt_paths": ["/health"],
        "exempt_methods": ["OPTIONS"],
    }
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, Callable

from flux.integrations import FrameworkNotInstalled
from flux.integrations._check import Check
from flux.integrations._common import TOO_MANY_REQUESTS, Integration, RequestState
from flux.integrations._global import GlobalLimits
from flux.integrations._policies import alimited, asettle, limited, settle

try:
    from asgiref.sync import iscoroutinefunction, markcoroutinefunction
    from django.conf import settings
    from django.http import HttpRequest, HttpResponseBase, JsonResponse
except ImportError as exc:  # pragma: no cover - exercised only without Django
    raise FrameworkNotInstalled("django", "django") from exc

__all__ = ["INTEGRATION", "SETTING", "DjangoIntegration", "FluxMiddleware"]

SETTING = "FLUX_MIDDLEWARE"
# Attribute of the (Django) request holding the middleware's RequestState.
_STATE_ATTR = "_flux_state"


def _drf_request_type() -> type | None:
    # DRF is optional: look it up only if the application imported it.
    module = sys.modules.get("rest_framework.request")
    return getattr(module, "Request", None)


def _django_request(request: Any) -> HttpRequest:
    # A DRF Request wraps the HttpRequest; state must live on the one both layers see.
    return getattr(request, "_request", request)


class DjangoIntegration(Integration):
    """Reads ``HttpRequest`` and DRF ``Request``; answers with ``JsonResponse``."""

    name = "django"

    def is_request(self, obj: Any) -> bool:
        """An ``HttpRequest``, or a DRF ``Request`` when DRF is loaded."""
        if isinstance(obj, HttpRequest):
            return True
        drf = _drf_request_type()
        return drf is not None and isinstance(obj, drf)

    def peer(self, request: Any) -> str | None:
        """``REMOTE_ADDR``: the socket peer as the server reports it."""
        return request.META.get("REMOTE_ADDR") or None

    def header(self, request: Any, name: str) -> str | None:
        """From ``META`` (``HTTP_X_FORWARDED_FOR``), where the server joined repeats."""
        return request.META.get("HTTP_" + name.upper().replace("-", "_"))

    def user_id(self, request: Any) -> str | None:
        """``request.user.pk`` when authenticated (DRF: after its authentication ran)."""
        user = getattr(request, "user", None)
        if user is None or not getattr(user, "is_authenticated", False):
            return None
        pk = getattr(user, "pk", None)
        return str(pk) if pk is not None else None

    def method(self, request: Any) -> str:
        """``request.method``."""
        return str(request.method or "GET").upper()

    def path(self, request: Any) -> str:
        """``request.path``."""
        return str(request.path)

    def state(self, request: Any) -> RequestState | None:
        """The middleware's state, kept on the underlying ``HttpRequest``."""
        return getattr(_django_request(request), _STATE_ATTR, None)

    def set_state(self, request: Any, state: RequestState) -> None:
        """Attach the middleware's state to the underlying ``HttpRequest``."""
        setattr(_django_request(request), _STATE_ATTR, state)

    def denied(
        self, body: dict[str, Any], headers: Mapping[str, str], status: int = TOO_MANY_REQUESTS
    ) -> JsonResponse:
        """A ``JsonResponse`` with status 429 (DRF's ``finalize_response`` accepts it too)."""
        return JsonResponse(body, status=status, headers=dict(headers))

    def app_limited_response(self, request: Any, error: Any) -> Any:
        """``settings.FLUX_ON_LIMITED(request, error)``, when the project sets it."""
        handler = _on_limited_handler()
        return None if handler is None else handler(request, error)

    def add_headers(
        self, request: Any, response: Any, headers: Mapping[str, str], sub_response: Any = None
    ) -> Any:
        """Set the headers on any ``HttpResponseBase`` (DRF ``Response`` included)."""
        if isinstance(response, HttpResponseBase):
            for name, value in headers.items():
                response[name] = value
        return response


#: Setting naming the application's answer to a refused request: a callable or its dotted
#: path, called as ``handler(request, exception)`` (a :class:`~flux.RateLimitExceeded`),
#: like Django's own ``handler403``.
ON_LIMITED_SETTING = "FLUX_ON_LIMITED"


def _on_limited_handler() -> Any:
    handler = getattr(settings, ON_LIMITED_SETTING, None)
    if isinstance(handler, str):
        from django.utils.module_loading import import_string

        handler = import_string(handler)
    return handler


INTEGRATION = DjangoIntegration()


class FluxMiddleware:
    """Applies a default limit, or per-path limits, to every request (sync or async stack).

    Configured by the ``FLUX_MIDDLEWARE`` setting (see the module doc); the limits are built
    once, when Django loads its middleware. A decorated view adds its own limits to these.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        """Build the limits from ``settings.FLUX_MIDDLEWARE``."""

        self.get_response = get_response
        options = getattr(settings, SETTING, None) or {}
        self.limits = GlobalLimits(**options)
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        """Check the request, then hand it on (or answer 429)."""
        if self._async:
            return self._acall(request)
        check = self.limits.check(INTEGRATION, request, _view_of(request))
        if check is None:
            return self.get_response(request)
        if check.denied:
            return (
                limited(check, INTEGRATION, request)
                if isinstance(check, Check)
                else (check.deny(INTEGRATION))
            )
        state = RequestState(list(check.applied))
        INTEGRATION.set_state(request, state)
        response = self.get_response(request)
        if self.limits.settles and isinstance(check, Check):
            response = settle(check, INTEGRATION, response)
        return self._finish(request, response, state)

    async def _acall(self, request: HttpRequest) -> Any:
        check = await self.limits.acheck(INTEGRATION, request, _view_of(request))
        if check is None:
            return await self.get_response(request)
        if check.denied:
            if isinstance(check, Check):
                return await alimited(check, INTEGRATION, request)
            return check.deny(INTEGRATION)
        state = RequestState(list(check.applied))
        INTEGRATION.set_state(request, state)
        response = await self.get_response(request)
        if self.limits.settles and isinstance(check, Check):
            response = await asettle(check, INTEGRATION, response)
        return self._finish(request, response, state)

    def _finish(self, request: HttpRequest, response: Any, state: RequestState) -> Any:
        if not state.decorated and self.limits.headers_on_success:
            INTEGRATION.add_headers(request, response, self.limits.headers(state.applied))
        return response


def _view_of(request: HttpRequest) -> Any:
    """The view ``request`` is routed to (None when no URL pattern matches): resolved here,
    before Django does, so the middleware knows whether the view counts its own limits."""
    from django.urls import Resolver404, resolve

    try:
        return resolve(request.path_info, getattr(request, "urlconf", None)).func
    except Resolver404:
        return None
