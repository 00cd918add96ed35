"""How many positional arguments a user's callable takes: one reading for every callable flux
calls with what it has (a ``key`` or ``cost`` callable, a decorated function)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["positional_arity"]


def positional_arity(func: Callable[..., Any]) -> int | None:
    """How many positional parameters ``func`` names (``self`` of a bound method excluded);
    None when it takes ``*args`` (any number) or its signature cannot be read."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return None
    return sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
