"""Global limits for every request: the rules behind flux's three middlewares.

- Django: ``flux.integrations.django.FluxMiddleware`` (``FLUX_MIDDLEWARE`` setting);
- FastAPI / Starlette: ``app.add_middleware(flux.integrations.fastapi.FluxMiddleware, ...)``;
- Flask: ``flux.integrations.flask.FluxLimiter(app, ...)``.

All take the arguments of :class:`GlobalLimits`. A limit is given as ``True`` (the
``[rate_limit]`` section of flux.toml), a preset name (``"api_tier_1"``, from
``[rate_limits.api_tier_1]``), a rate string (``"100/minute"``, ``"10/second; 1000/day"``:
several rates are checked together), a mapping (``{"requests": 100, "period": 60}``, optionally with
``"name"`` to start from a preset) or a :class:`~flux.config.LimitConfig`.

For each request the most specific matching ``paths`` rule applies, else ``default``. A rule
``"/api/"`` (trailing slash) matches every path under it; ``"/login"`` matches ``/login`` and
``/login/...``; a rule with ``*`` is a glob. Exempt paths and methods are never counted.

A decorated view adds its limits to the middleware's, all or nothing: when the framework
tells which view a request goes to and that view has limits of its own, the middleware leaves
its hit pending on the request and the view counts both in one hit, so a request the view
refuses costs the middleware's limit nothing. The view's headers list both limits.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from typing import Any, Union

from flux.config import FluxConfig, LimitConfig, get_config
from flux.headers import AppliedLimit, build_headers
from flux.identity import Identifier, KeySpec
from flux.integrations._check import Check
from flux.integrations._common import Integration, RequestState
from flux.integrations._declared import Limit, limits_for, named_rates, shared_limit
from flux.integrations._evaluate import aevaluate, evaluate
from flux.integrations._pending import counts_its_own_hits
from flux.integrations._policies import DeductWhen, ExemptWhen, OnLimited, is_exempt
from flux.integrations._rule import Rule
from flux.integrations._unavailable import OnUnavailable, Unavailable
from flux.rates import is_rate_string

__all__ = ["GLOBAL_NAME", "GlobalLimits", "LimitSpec"]

LimitSpec = Union[bool, str, Mapping[str, Any], LimitConfig, None]
# Bucket and header name of the [rate_limit] default when it is used as the global limit.
GLOBAL_NAME = "global"
_LIMIT_KEYS = frozenset({"name", "requests", "period", "burst", "policy"})


def _path_matches(rule: str, path: str) -> bool:
    if any(c in rule for c in "*?["):
        return fnmatch.fnmatchcase(path, rule)
    if rule.endswith("/"):
        return path.startswith(rule)
    return path == rule or path.startswith(rule + "/")


class GlobalLimits:
    """Which limit applies to each request, and its check.

    ``default``: the limit for every path without a more specific rule (``True``: flux.toml's
    ``[rate_limit]``; ``None``/``False``: none). ``paths``: ``{path rule: limit}``.
    ``exempt_paths`` / ``exempt_methods``: never limited. ``key``, ``cost``,
    ``on_unavailable``, ``exempt_when``, ``deduct_when``, ``on_limited``: as in
    :func:`flux.rate_limit` (in the ASGI middleware ``deduct_when`` receives an object with
    the response's ``status_code`` and ``headers``). ``config``: default
    :func:`flux.get_config`, read now.
    """

    config: FluxConfig
    exempt_paths: tuple[str, ...]
    exempt_methods: frozenset[str]

    def __init__(
        self,
        default: LimitSpec = True,
        *,
        paths: Mapping[str, LimitSpec] | None = None,
        exempt_paths: Iterable[str] = (),
        exempt_methods: Iterable[str] = (),
        key: KeySpec = None,
        cost: int = 1,
        config: FluxConfig | None = None,
        ipv6_prefix: int | None = None,
        on_unavailable: OnUnavailable | None = None,
        exempt_when: ExemptWhen | None = None,
        deduct_when: DeductWhen | None = None,
        on_limited: OnLimited | None = None,
    ) -> None:
        """Build every limit now (a bad preset name is a ConfigError here, not per request)."""
        self._on_unavailable = on_unavailable
        self._exempt_when = exempt_when
        self._deduct_when = deduct_when
        self._on_limited = on_limited
        #: Whether a response is needed after the view (to give hits back).
        self.settles = deduct_when is not None
        self.config = config if config is not None else get_config()
        if isinstance(exempt_paths, str) or isinstance(exempt_methods, str):
            raise TypeError("exempt_paths and exempt_methods take lists, not a string")
        self.exempt_paths = tuple(exempt_paths)
        self.exempt_methods = frozenset(m.upper() for m in exempt_methods)
        self._identify = Identifier(key, config=self.config, ipv6_prefix=ipv6_prefix)
        self._cost = cost
        self._default = self._rules(default, None)
        # Longest rule first: the most specific match wins.
        self._paths = [
            (pattern, self._rules(spec, pattern))
            for pattern, spec in sorted((paths or {}).items(), key=lambda kv: -len(kv[0]))
        ]

    def _rules(self, spec: LimitSpec, pattern: str | None) -> list[Rule]:
        if spec is None or spec is False:
            return []
        fallback = GLOBAL_NAME if pattern is None else f"path:{pattern}"
        limits: tuple[Limit, ...]
        if spec is True:
            limits = limits_for(None, config=self.config)
        elif isinstance(spec, str) and is_rate_string(spec):
            # A rate string is this path's own (or the default's): named by it, per quota.
            limits = named_rates(fallback, spec, config=self.config)
        elif isinstance(spec, str):
            limits = limits_for(spec, config=self.config)
        else:
            limits = (self._limit(spec),)
        rules = []
        for limit in limits:
            name = limit.name or fallback
            if len(limits) > 1 and limit.name is None:
                name = f"{fallback}[{limit.describe()}]"
            rules.append(
                Rule(
                    limit,
                    bucket=name,
                    label=name,
                    identify=self._identify,
                    cost=self._cost,
                    on_unavailable=self._on_unavailable,
                    exempt_when=self._exempt_when,
                    deduct_when=self._deduct_when,
                    on_limited=self._on_limited,
                )
            )
        return rules

    def _limit(self, spec: LimitSpec) -> Limit:
        if isinstance(spec, LimitConfig):
            return Limit(
                requests=spec.requests,
                period=spec.period,
                burst=spec.burst,
                policy=spec.policy,
                config=self.config,
            )
        if isinstance(spec, Mapping):
            unknown = set(spec) - _LIMIT_KEYS
            if unknown:
                raise TypeError(f"unknown limit keys {sorted(unknown)}; use {sorted(_LIMIT_KEYS)}")
            options = {k: spec.get(k) for k in ("requests", "period", "burst", "policy")}
            name = spec.get("name")
            if name is not None:
                return shared_limit(name, config=self.config, **options)
            return Limit(config=self.config, **options)
        raise TypeError(
            "a limit is True, a preset name, a rate string, a mapping or a LimitConfig, "
            f"got {type(spec).__name__}"
        )

    def rules_for(self, path: str, method: str) -> list[Rule]:
        """The rules for a request (``[]`` when it is exempt or no limit covers it)."""
        if method.upper() in self.exempt_methods:
            return []
        if any(_path_matches(rule, path) for rule in self.exempt_paths):
            return []
        for pattern, rules in self._paths:
            if _path_matches(pattern, path):
                return rules
        return self._default

    def _applicable(self, integration: Integration, request: Any) -> list[Rule]:
        rules = self.rules_for(integration.path(request), integration.method(request))
        if rules and rules[0].may_exempt:  # one policy for all of them
            return [] if is_exempt(rules[0], integration, request) else rules
        return rules

    def check(
        self, integration: Integration, request: Any, view: Any = None
    ) -> Check | Unavailable | None:
        """Count the request against its rule; None when nothing applies, or when ``view``
        (the view the request is routed to, if the framework tells) has limits of its own:
        then the rule is left pending on the request and the view counts it with its own
        limits, all or nothing."""
        rules = self._applicable(integration, request)
        if not rules or self._deferred(rules, integration, request, view):
            return None
        return evaluate(rules, integration, request, endpoint=rules[0].label)

    async def acheck(
        self, integration: Integration, request: Any, view: Any = None
    ) -> Check | Unavailable | None:
        """:meth:`check` for async middlewares."""
        rules = self._applicable(integration, request)
        if not rules or self._deferred(rules, integration, request, view):
            return None
        return await aevaluate(rules, integration, request, endpoint=rules[0].label)

    @staticmethod
    def _deferred(rules: list[Rule], integration: Integration, request: Any, view: Any) -> bool:
        if view is None or not counts_its_own_hits(view, integration.method(request)):
            return False
        integration.set_state(request, RequestState(pending=rules))
        return True

    @property
    def headers_on_success(self) -> bool:
        """``[flux] headers_on_success``."""
        return self.config.flux.headers_on_success

    def headers(self, applied: list[AppliedLimit]) -> dict[str, str]:
        """The informational headers of an allowed request."""
        return build_headers(applied)
