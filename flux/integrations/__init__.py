"""Framework integrations: which framework a call belongs to, found without importing any.

Detection looks at the module of the request object's type (and its bases): a type from
``django`` or ``rest_framework`` selects :mod:`flux.integrations.django`, one from
``starlette`` or ``fastapi`` selects :mod:`flux.integrations.fastapi`. Flask passes no request
to its views, so when no request is among the arguments and ``flask`` is already in
``sys.modules``, an active Flask request context selects :mod:`flux.integrations.flask`. An
integration module is imported only once its framework is known to be in use.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from flux.exceptions import FluxError
from flux.integrations._common import Integration, RequestState

__all__ = [
    "FrameworkNotInstalled",
    "Integration",
    "RequestState",
    "find_request",
    "integration_for",
    "load",
]

# Top-level package of a request type -> the flux integration module that reads it.
_PACKAGES = {
    "django": "django",
    "rest_framework": "django",
    "starlette": "fastapi",
    "fastapi": "fastapi",
}
# Arguments scanned for a request: Django views get it first, methods second (after self).
_POSITIONS = 2

_loaded: dict[str, Integration] = {}
_by_type: weakref.WeakKeyDictionary[type, Integration | None] = weakref.WeakKeyDictionary()


class FrameworkNotInstalled(FluxError, ImportError):
    """A flux integration was used but its framework is not installed."""

    def __init__(self, framework: str, extra: str) -> None:
        """Name the framework and the extra that installs it (``flux-ratelimit[flask]``)."""
        super().__init__(
            f"flux's {framework} integration needs {framework}: "
            f"pip install 'flux-ratelimit[{extra}]'"
        )


def load(name: str) -> Integration:
    """The integration singleton of module ``flux.integrations.<name>`` (imported once)."""
    try:
        return _loaded[name]
    except KeyError:
        pass
    module = importlib.import_module(f"flux.integrations.{name}")
    integration: Integration = module.INTEGRATION
    _loaded[name] = integration
    return integration


def integration_for(obj: Any) -> Integration | None:
    """The integration whose framework made ``obj``, when ``obj`` is a request; else None."""
    cls = type(obj)
    try:
        found = _by_type[cls]
    except (KeyError, TypeError):
        found = _detect(obj, cls)
    return found if found is not None and found.is_request(obj) else None


def _detect(obj: Any, cls: type) -> Integration | None:
    found = None
    for base in cls.__mro__:
        name = _PACKAGES.get(base.__module__.partition(".")[0])
        if name is not None:
            integration = load(name)
            if integration.is_request(obj):
                found = integration
                break
    # A type that takes no weak references is simply not cached.
    with contextlib.suppress(TypeError):
        _by_type[cls] = found
    return found


def find_request(
    args: Sequence[Any], kwargs: Mapping[str, Any]
) -> tuple[Integration, Any] | tuple[None, None]:
    """The framework request among a view's arguments, with its integration.

    Looks at the first two positional arguments (``request`` or ``self, request``), then the
    keyword arguments, then an active Flask request context. ``(None, None)`` for a plain call.
    """
    if args:
        for candidate in args[:_POSITIONS]:
            integration = integration_for(candidate)
            if integration is not None:
                return integration, candidate
    if kwargs:
        for candidate in kwargs.values():
            integration = integration_for(candidate)
            if integration is not None:
                return integration, candidate
    flask = _loaded.get("flask")
    if flask is None and "flask" in sys.modules:
        flask = load("flask")
    if flask is not None:
        request = flask.current_request()  # type: ignore[attr-defined]
        if request is not None:
            return flask, request
    return None, None
