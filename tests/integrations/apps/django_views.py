"""Views and URLconf of the Django test project: every way a Django view can be limited."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any

from appconfig import (
    ALGO_PERIOD,
    ALGO_QUOTA,
    BURST_QUOTA,
    CONFIG,
    CUSTOM_BODY,
    EXEMPT_NETWORK,
    JITTER_CONFIG,
    NAMED,
    PERIOD,
    QUIET_CONFIG,
    QUOTA,
    RATES,
    REDIS_CONFIG,
    failed,
    internal,
    password_ok,
    plan_of,
)
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.utils.decorators import method_decorator
from django.views import View
from rest_framework.authentication import BaseAuthentication
from rest_framework.decorators import api_view
from rest_framework.response import Response
from rest_framework.views import APIView

from flux import rate_limit
from flux._flux import ALGORITHMS


def limited(**kwargs: Any) -> Any:
    """The usual test limit: QUOTA per PERIOD, on the test config."""
    kwargs.setdefault("requests", QUOTA)
    kwargs.setdefault("period", PERIOD)
    return rate_limit(config=CONFIG, **kwargs)


class HeaderAuthentication(BaseAuthentication):
    """DRF test authentication: the X-User header names the user."""

    def authenticate(self, request: Any) -> Any:
        name = request.META.get("HTTP_X_USER")
        if not name:
            return None
        return SimpleNamespace(is_authenticated=True, pk=f"drf-{name}"), None


def ping(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


def open_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"open": True})


def api_thing(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"api": True})


@limited()
def sync_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"view": "sync"})


@limited()
async def async_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"view": "async"})


@limited(requests=2)
@limited(requests=5, period=PERIOD * 24)
def stacked(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"view": "stacked"})


@rate_limit(NAMED, config=CONFIG)
def named(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"view": "named"})


@limited(key="user")
def user(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"view": "user"})


@limited(key="header:X-API-Key")
def apikey(request: HttpRequest) -> HttpResponse:
    return HttpResponse("plain text")


@limited(requests=1, methods=["POST"])
def post_only(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"view": "post-only"})


@limited(requests=BURST_QUOTA)
def burst(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"view": "burst"})


@limited(requests=BURST_QUOTA)
async def burst_async(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"view": "burst-async"})


@rate_limit(requests=1, period=PERIOD, config=JITTER_CONFIG)
def jitter(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"view": "jitter"})


@rate_limit(requests=1, period=PERIOD, config=QUIET_CONFIG)
def quiet(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"view": "quiet"})


@method_decorator(limited(), name="dispatch")
class DispatchView(View):
    """method_decorator on dispatch: every method is limited."""

    def get(self, request: HttpRequest) -> JsonResponse:
        return JsonResponse({"view": "dispatch"})


class DirectView(View):
    """rate_limit straight on a method (self, request)."""

    @limited()
    def get(self, request: HttpRequest) -> JsonResponse:
        return JsonResponse({"view": "direct"})


class AsyncDirectView(View):
    """An async class-based view."""

    @limited()
    async def get(self, request: HttpRequest) -> JsonResponse:
        return JsonResponse({"view": "async-direct"})


class MethodListView(View):
    """method_decorator with a list: two limits, collapsed into one all-or-nothing check."""

    @method_decorator([limited(requests=2), limited(requests=5, period=PERIOD * 24)])
    def get(self, request: HttpRequest) -> JsonResponse:
        return JsonResponse({"view": "method-list"})


class DrfView(APIView):
    """A DRF view limited per authenticated user (DRF's request.user)."""

    authentication_classes = (HeaderAuthentication,)

    @limited(key="user")
    def get(self, request: Any) -> Response:
        return Response({"view": "drf", "user": getattr(request.user, "pk", None)})


@api_view(["GET"])
@limited()
def drf_function(request: Any) -> Response:
    return Response({"view": "drf-function"})


def _algorithm_view(policy: str) -> Any:
    def view(request: HttpRequest) -> JsonResponse:
        return JsonResponse({"policy": policy})

    view.__name__ = view.__qualname__ = f"algo_{policy}"
    return rate_limit(requests=ALGO_QUOTA, period=ALGO_PERIOD, policy=policy, config=CONFIG)(view)


def policy_routes(config: Any, prefix: str = "") -> list[Any]:
    """The per-request policy views (the contract's PolicyContract), on ``config``'s store."""

    def limited_here(**kwargs: Any) -> Any:
        kwargs.setdefault("requests", QUOTA)
        kwargs.setdefault("period", PERIOD)
        return rate_limit(config=config, **kwargs)

    @rate_limit(RATES, config=config)
    def rates(request: HttpRequest) -> JsonResponse:
        return JsonResponse({"view": "rates"})

    @rate_limit(limit=plan_of, key="header:X-User", config=config)
    def plan(request: HttpRequest) -> JsonResponse:
        return JsonResponse({"view": "plan"})

    @limited_here(exempt_when=internal)
    def internal_view(request: HttpRequest) -> JsonResponse:
        return JsonResponse({"view": "internal"})

    @limited_here(deduct_when=failed)
    def login(request: HttpRequest) -> JsonResponse:
        ok = password_ok(request)
        return JsonResponse({"login": ok}, status=200 if ok else 401)

    @limited_here(requests=1, on_limited=lambda req, result: JsonResponse(CUSTOM_BODY, status=429))
    def custom(request: HttpRequest) -> JsonResponse:
        return JsonResponse({"view": "custom"})

    exempt_config = replace(config, flux=replace(config.flux, exempt_ips=[EXEMPT_NETWORK]))

    @rate_limit(requests=1, period=PERIOD, config=exempt_config)
    def exempt_ip(request: HttpRequest) -> JsonResponse:
        return JsonResponse({"view": "exempt-ip"})

    class LoginView(APIView):
        """DRF: deduct_when on an APIView method."""

        @limited_here(deduct_when=failed)
        def get(self, request: Any) -> Response:
            ok = password_ok(request)
            return Response({"login": ok}, status=200 if ok else 401)

    class InternalClassView(View):
        """A class-based view: exempt_when through method_decorator."""

        @method_decorator(limited_here(exempt_when=internal))
        def get(self, request: HttpRequest) -> JsonResponse:
            return JsonResponse({"view": "cbv-internal"})

    views = {
        "rates": rates,
        "plan": plan,
        "internal": internal_view,
        "login": login,
        "drf/login": LoginView.as_view(),
        "cbv/internal": InternalClassView.as_view(),
        "custom": custom,
        "exempt-ip": exempt_ip,
    }
    return [path(prefix + route, view) for route, view in views.items()]


urlpatterns = [
    *policy_routes(CONFIG),
    # The same on Redis, declared now and connected at the first request: the Redis tests
    # start a server on REDIS_PORT (Django reads its URLconf once).
    *policy_routes(REDIS_CONFIG, "redis/"),
    path("ping", ping),
    path("open", open_view),
    path("api/thing", api_thing),
    path("sync", sync_view),
    path("async", async_view),
    path("stacked", stacked),
    path("named", named),
    path("user", user),
    path("apikey", apikey),
    path("post-only", post_only),
    path("burst", burst),
    path("burst-async", burst_async),
    path("jitter", jitter),
    path("quiet", quiet),
    path("cbv/dispatch", DispatchView.as_view()),
    path("cbv/direct", DirectView.as_view()),
    path("cbv/async", AsyncDirectView.as_view()),
    path("cbv/list", MethodListView.as_view()),
    path("drf/view", DrfView.as_view()),
    path("drf/function", drf_function),
    *[path(f"algo/{policy}", _algorithm_view(policy)) for policy in ALGORITHMS],
]
