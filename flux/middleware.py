"""``flux.middleware.GlobalLimits``, where flux-limiter users and earlier flux code import it.

The class lives with the integrations it serves, in :mod:`flux.integrations._global`
(docs/architecture.md, "Layout": imports only go down, and the framework middlewares build
on it); this module only keeps the public name importable from here.
"""

from __future__ import annotations

from flux.integrations._global import GlobalLimits, LimitSpec

__all__ = ["GlobalLimits", "LimitSpec"]
