"""Django settings of the test project, its test middleware, and the WSGI application.

In process, the tests call :func:`setup`; under gunicorn, ``django_site:application``.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable

import django
from django.conf import settings

SETTINGS: dict[str, Any] = {
    "DEBUG": False,
    "SECRET_KEY": "flux-tests",
    "ALLOWED_HOSTS": ["*"],
    "ROOT_URLCONF": "django_views",
    "MIDDLEWARE": ["django_site.HeaderUserMiddleware"],
    "INSTALLED_APPS": ["django.contrib.contenttypes", "django.contrib.auth", "rest_framework"],
    "DATABASES": {},
    "USE_TZ": True,
    "REST_FRAMEWORK": {
        "DEFAULT_AUTHENTICATION_CLASSES": [],
        "DEFAULT_PERMISSION_CLASSES": [],
        "UNAUTHENTICATED_USER": None,
    },
}
FLUX_MIDDLEWARE = "flux.integrations.django.FluxMiddleware"


def setup() -> None:
    """Configure Django once per process (idempotent)."""
    if not settings.configured:
        settings.configure(**SETTINGS)
        django.setup()


class HeaderUserMiddleware:
    """Test authentication: the X-User header names the user (no database needed)."""

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        name = request.headers.get("X-User")
        if name:
            request.user = SimpleNamespace(is_authenticated=True, pk=name)
        return self.get_response(request)


_wsgi: Callable[..., Any] | None = None


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
    """The WSGI entry point for real servers (Django set up on the first request)."""
    global _wsgi
    if _wsgi is None:
        setup()
        from django.core.wsgi import get_wsgi_application

        _wsgi = get_wsgi_application()
    return _wsgi(environ, start_response)
