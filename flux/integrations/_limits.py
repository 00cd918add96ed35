"""Declared limits and their evaluation, shared by ``rate_limit`` and the middlewares.

- :class:`Limit`: one quota, its :class:`~flux.RateLimiter` built when it is declared (so a bad
  preset name fails at decoration time) and kept for every request.
- :class:`Rule`: a limit plus how a request maps to its bucket (identity, cost, methods).
- :func:`evaluate`: applies several rules to one request **all or nothing** with one
  ``hit_many`` call, and returns a :class:`Check` that builds headers, 429s and exceptions.

Tests swap the clock of every declared limit through :func:`use_clock` / :func:`reset_all`
(used by :mod:`flux.testing`): each limit rebuilds its limiter, empty, the next time it is used.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from time import perf_counter
from typing import Any, NamedTuple, Union

from flux import _flux
from flux.config import FluxConfig, LimitConfig, RateLimitPolicy, get_config
from flux.exceptions import RateLimitExceeded
from flux.headers import (
    RETRY_AFTER,
    AppliedLimit,
    build_headers,
    limit_headers,
    sf_string,
    window_seconds,
)
from flux.identity import Identifier
from flux.integrations import _report
from flux.integrations._common import Integration, RequestState, denied_body
from flux.integrations._policies import (
    DeductWhen,
    ExemptWhen,
    OnLimited,
    check_callable,
    exempt_addresses,
)
from flux.integrations._report import report, report_error, report_one
from flux.integrations._unavailable import OnUnavailable, StoreUnavailable, Unavailable
from flux.limiter import ManualClock, RateLimiter, RateLimitResult
from flux.rates import is_rate_string, parse_rates

LOG = logging.getLogger("flux")

__all__ = [
    "Check",
    "Limit",
    "Rule",
    "evaluate",
    "hit_all",
    "reset_all",
    "shared_limit",
    "use_clock",
]

Item = tuple[RateLimiter, str, int]
Cost = Union[int, Callable[..., int]]

# --- the test hook: a clock for every declared limit, and a generation to rebuild them -------
_clock: ManualClock | None = None
_generation = 0


def use_clock(clock: ManualClock | None) -> None:
    """Make every declared limit use ``clock`` (None: the system clock), starting empty."""
    global _clock
    _clock = clock
    reset_all()


def reset_all() -> None:
    """Empty every declared limit: each rebuilds its limiter the next time it is used."""
    global _generation
    _generation += 1


def current_clock() -> ManualClock | None:
    """The clock installed by :func:`use_clock`, if any."""
    return _clock


class Limit:
    """One declared quota and its limiter; ``name`` names its bucket (a preset, usually).

    A name that is not a ``[rate_limits.<name>]`` preset is a ConfigError, unless both
    ``requests`` and ``period`` are given: then nothing is missing and the name only names
    the bucket (flux-limiter accepted such names).
    """

    name: str | None
    preset: str | None
    config: FluxConfig
    awaitable: bool

    def __init__(
        self,
        name: str | None = None,
        *,
        requests: int | None = None,
        period: float | None = None,
        burst: int | None = None,
        policy: RateLimitPolicy | str | None = None,
        config: FluxConfig | None = None,
    ) -> None:
        """Resolve the quota against ``config`` (default: :func:`flux.get_config`) now."""
        self.name = name
        self.config = config if config is not None else get_config()
        complete = requests is not None and period is not None
        self.preset = None if complete and name not in self.config.rate_limits else name
        # What names the limiter's keys when it is no preset: the bucket of the (first) rule
        # that applies it (see for_bucket); a preset is named by itself.
        self.bucket: str | None = None
        self._twins: dict[str, Limit] = {}
        self._args = (requests, period, burst, policy)
        self._lock = threading.Lock()
        self._generation = _generation
        self._limiter = self._build()
        # Whether a hit is a round trip worth awaiting (a Redis store); the embedded store
        # answers inline. A rebuild after a test reset keeps the store.
        self.awaitable = getattr(self._limiter, "store", None) is not None

    def _build(self) -> RateLimiter:
        requests, period, burst, policy = self._args
        if self.preset is None and (requests is None or period is None):
            # [rate_limit]'s quota, spelt out: a name given in code needs its quota given too.
            defaults = self.config.rate_limit
            if requests is None:
                requests = defaults.requests
                burst = defaults.burst if burst is None else burst
            period = defaults.period if period is None else period
        return RateLimiter(
            requests,
            period,
            burst=burst,
            policy=policy,
            config=self.config,
            name=self.preset if self.preset is not None else self.bucket,
            clock=_clock,
        )

    def for_bucket(self, bucket: str) -> Limit:
        """This limit with its keys named ``bucket`` (a preset keeps its own name).

        Every store names a limit's keys ``{key_prefix}{name}:{<identity>}:<algorithm>``, and
        analytics and ``flux clear`` show and take the same name and identity. The first rule
        names an unnamed limit in place; a declaration applied to a second function gets a
        limit of its own (its own bucket).
        """
        if self.preset is not None or self.bucket == bucket:
            return self
        with self._lock:
            if self.bucket is None:
                self.bucket = bucket
                self._limiter = self._build()
                self._twins[bucket] = self
                return self
            # One limit per bucket for the whole family of twins, kept: django's
            # method_decorator applies the decorator anew on every request.
            twin = self._twins.get(bucket)
            if twin is None:
                requests, period, burst, policy = self._args
                twin = Limit(
                    self.name,
                    requests=requests,
                    period=period,
                    burst=burst,
                    policy=policy,
                    config=self.config,
                )
                twin._twins = self._twins
                twin.bucket = bucket
                twin._limiter = twin._build()
                self._twins[bucket] = twin
            return twin

    @property
    def limiter(self) -> RateLimiter:
        """The limiter; rebuilt (empty) only after a test reset or clock change."""
        if self._generation != _generation:
            with self._lock:
                if self._generation != _generation:
                    self._limiter = self._build()
                    self._generation = _generation
        return self._limiter

    def describe(self) -> str:
        """``5/10s`` style quota text, to tell apart unnamed limits of one function."""
        limiter = self._limiter
        return f"{limiter.requests}/{limiter.period:g}s"


_shared: dict[tuple[Any, ...], Limit] = {}
_shared_lock = threading.Lock()


def shared_limit(
    name: str,
    *,
    requests: int | None,
    period: float | None,
    burst: int | None,
    policy: RateLimitPolicy | str | None,
    config: FluxConfig | None,
) -> Limit:
    """The one :class:`Limit` for preset ``name`` with these overrides.

    A named limit is one bucket wherever it is used (as flux-limiter's keys were): every view
    decorated with ``rate_limit("api")`` shares it. On the embedded store that means sharing
    the limiter object, since each limiter owns its memory.
    """
    config = config if config is not None else get_config()
    policy_key = str(RateLimitPolicy(policy)) if policy is not None else None
    # id(config): configs are not hashable, and the Limit keeps its config alive.
    key = (id(config), name, requests, period, burst, policy_key)
    with _shared_lock:
        limit = _shared.get(key)
        if limit is None:
            limit = Limit(
                name, requests=requests, period=period, burst=burst, policy=policy, config=config
            )
            _shared[key] = limit
        return limit


def limits_for(
    spec: str | None,
    *,
    requests: int | None = None,
    period: float | None = None,
    burst: int | None = None,
    policy: RateLimitPolicy | str | None = None,
    config: FluxConfig | None = None,
) -> tuple[Limit, ...]:
    """The limits a declaration names: a rate string gives one unnamed limit per rate; a
    preset gives its shared limit, plus one per further rate of its ``limit`` string (named
    ``<preset>[<quota>]``, so each quota has keys of its own); None gives ``[rate_limit]``'s.

    ``requests``/``period`` override a preset's first quota, as they always did; with a rate
    string they make no sense and are refused.
    """
    config = config if config is not None else get_config()
    if spec is not None and is_rate_string(spec):
        if requests is not None or period is not None:
            raise ValueError(
                f"give the quota either as the rate string {spec!r} or as requests and period, "
                "not both"
            )
        rates = parse_rates(spec)
        if burst is not None and len(rates) > 1:
            raise ValueError(f"burst applies to one rate; {spec!r} has {len(rates)}")
        return tuple(
            Limit(requests=r.requests, period=r.period, burst=burst, policy=policy, config=config)
            for r in rates
        )
    base: LimitConfig | None
    if spec is None:
        base = config.rate_limit
        first = Limit(requests=requests, period=period, burst=burst, policy=policy, config=config)
    else:
        base = config.limit(spec) if requests is None or period is None else None
        first = shared_limit(
            spec, requests=requests, period=period, burst=burst, policy=policy, config=config
        )
    if base is None or requests is not None or period is not None or len(base.rates) == 1:
        return (first,)
    policy = policy if policy is not None else base.policy
    if spec is None:  # unnamed: every rate in the declaring view's own buckets
        return (
            first,
            *(
                Limit(requests=r.requests, period=r.period, policy=policy, config=config)
                for r in base.rates[1:]
            ),
        )
    extra = (
        shared_limit(
            f"{spec}[{rate.describe()}]",
            requests=rate.requests,
            period=rate.period,
            burst=None,
            policy=policy,
            config=config,
        )
        for rate in base.rates[1:]
    )
    return (first, *extra)


def named_rates(
    name: str,
    text: str,
    *,
    burst: int | None = None,
    policy: RateLimitPolicy | str | None = None,
    config: FluxConfig | None = None,
) -> tuple[Limit, ...]:
    """The limits of rate string ``text`` named ``name`` (``rate_limit("login", limit="5/m")``):
    the first rate is named ``name``, each further one ``name[<quota>]``."""
    rates = parse_rates(text)
    if burst is not None and len(rates) > 1:
        raise ValueError(f"burst applies to one rate; {text!r} has {len(rates)}")
    return tuple(
        shared_limit(
            name if i == 0 else f"{name}[{rate.describe()}]",
            requests=rate.requests,
            period=rate.period,
            burst=burst,
            policy=policy,
            config=config,
        )
        for i, rate in enumerate(rates)
    )


def _cost_arity(cost: Callable[..., int]) -> int:
    try:
        params = inspect.signature(cost).parameters.values()
    except (TypeError, ValueError):
        return 1
    return sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


#: Set on every ``rate_limit`` wrapper (see :func:`counts_its_own_hits`).
LIMITED_FLAG = "__flux_limited__"


def counts_its_own_hits(view: Any, method: str | None = None) -> bool:
    """Whether calling ``view`` goes through ``rate_limit`` (a function view, or for a class
    view the handler of ``method``, or its ``dispatch``): a middleware then leaves its hit to
    the view, which counts both limits in one all-or-nothing hit."""
    if getattr(view, LIMITED_FLAG, False):
        return True
    cls = getattr(view, "view_class", None) or getattr(view, "cls", None)
    if cls is None:
        return False
    handlers = ["dispatch"]
    if method is not None:
        handlers.append(method.lower())
    return any(getattr(getattr(cls, name, None), LIMITED_FLAG, False) for name in handlers)


class BadCost(ValueError):
    """A cost callable returned what no limit can count (0, a negative number, more than the
    capacity, not an int). The request is passed or refused as the limit's failure policy
    says, and the error is logged: it is the application's bug, not the client's."""


def check_cost(cost: Cost) -> Cost:
    """``cost`` if it is an int >= 1 or a callable; else a clear error at decoration time."""
    if callable(cost):
        return cost
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
        raise ValueError(f"cost must be an int >= 1 or a callable, got {cost!r}")
    return cost


def check_methods(methods: Iterable[str] | str | None) -> frozenset[str] | None:
    """The upper-cased method set (None: every method)."""
    if methods is None:
        return None
    if isinstance(methods, str):
        methods = [methods]
    found = frozenset(str(m).upper() for m in methods)
    if not found:
        raise ValueError("methods must name at least one HTTP method, or be None")
    return found


class Rule:
    """A limit applied to requests: bucket name, identity, cost and methods.

    The limiter is named by the bucket (or is the preset the bucket names), so only the
    identity is passed to it: the stored key is ``{key_prefix}{bucket}:{<identity>}:<algo>``.

    What the headers need of the rule (its quoted label, its window in seconds) is worked out
    here, once, rather than on every request.
    """

    limit: Limit
    bucket: str
    label: str
    identify: Identifier
    cost: Cost
    methods: frozenset[str] | None

    def __init__(
        self,
        limit: Limit,
        *,
        bucket: str,
        label: str,
        identify: Identifier,
        cost: Cost = 1,
        methods: Iterable[str] | str | None = None,
        on_unavailable: OnUnavailable | None = None,
        exempt_when: ExemptWhen | None = None,
        deduct_when: DeductWhen | None = None,
        on_limited: OnLimited | None = None,
    ) -> None:
        """Describe how ``limit`` applies; ``label`` names it in the IETF headers.

        ``on_unavailable(request, error)`` builds the response when the store cannot decide
        and the limit fails closed (default: a 503 with ``Retry-After``). ``exempt_when``,
        ``deduct_when`` and ``on_limited`` are the per-request policies of
        :mod:`flux.integrations._policies`.
        """
        self.on_unavailable = on_unavailable
        self.exempt_when = check_callable(exempt_when, "exempt_when")
        self.deduct_when = check_callable(deduct_when, "deduct_when")
        self.on_limited = check_callable(on_limited, "on_limited")
        self.exempt_addresses = exempt_addresses(limit.config)
        # Whether a request may be left alone by this rule (asked on every request).
        self.may_exempt = exempt_when is not None or self.exempt_addresses is not None
        # Whether a request needs more than one hit and the headers (the short lane).
        self.has_policies = any(
            p is not None for p in (exempt_when, deduct_when, on_limited, self.exempt_addresses)
        )
        limit = limit.for_bucket(bucket)
        self.limit = limit
        self.bucket = bucket
        self.label = label
        self.identify = identify
        self.cost = check_cost(cost)
        capacity = limit.limiter.limit
        if not callable(self.cost) and self.cost > capacity:
            raise ValueError(
                f"cost {self.cost} is larger than the capacity {capacity} of limit {bucket!r}: "
                "such a hit could never pass"
            )
        self._cost_arity = _cost_arity(cost) if callable(cost) else 0
        self.fixed_cost = not callable(self.cost)
        self.methods = check_methods(methods)
        self.quoted_label = sf_string(label)
        self.window_s = window_seconds(limit.limiter.period)

    def hit(
        self,
        integration: Integration | None,
        request: Any,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        endpoint: str | None,
    ) -> tuple[str, RateLimitResult, int]:
        """Count one call against this rule alone: ``(identity, decision, cost)``, reported
        to analytics. (Methods are the caller's to check.)

        Every request of a singly-limited view comes through here, so it is written out in
        full rather than through helpers: each Python call saved is ~0.1 µs.
        """
        identify = self.identify
        if identify.peer_only and integration is not None:
            identity = identify.of_peer(integration.peer(request))
        else:
            identity = identify(integration, request, args, kwargs)
        cost: int = self.cost if self.fixed_cost else self.cost_for(request, args, kwargs)  # type: ignore[assignment]
        limit = self.limit
        # Limit.limiter, inline: it is only rebuilt after a test reset.
        limiter = limit._limiter if limit._generation == _generation else limit.limiter
        if not _report.wanted:  # analytics off, no hooks: nothing to time or to report
            return identity, limiter.hit(identity, endpoint, cost), cost
        started = perf_counter()
        try:
            result = limiter.hit(identity, endpoint, cost)
        except Exception as error:
            report_error((self.bucket,), (identity,), error, perf_counter() - started, endpoint)
            raise
        report_one(self.bucket, identity, result, perf_counter() - started, endpoint)
        return identity, result, cost

    def cost_for(self, request: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> int:
        """The cost of this call (a callable cost sees the request, or the call's arguments)."""
        cost = self.cost
        if not callable(cost):
            return cost
        if self._cost_arity == 0:
            value = cost()
        elif request is not None:
            value = cost(request)
        else:
            value = cost(*args, **kwargs)
        capacity = self.limit.limiter.limit
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= capacity:
            raise BadCost(
                f"the cost callable of limit {self.bucket!r} returned {value!r}: a cost is an "
                f"int from 1 to the limit's capacity, {capacity}"
            )
        return value


# --- evaluation ------------------------------------------------------------------------------


def _many(items: list[Item]) -> list[RateLimitResult]:
    # A store may define its own atomic multi-hit (a Redis-backed RateLimiter: one script);
    # the embedded store's is flux._flux.hit_many.
    own = getattr(type(items[0][0]), "hit_many", None)
    if own is not None:
        return list(own(items))
    return _flux.hit_many(list[tuple[_flux.Limiter, str, int]](items))


def hit_all(items: list[Item], endpoint: str | None = None) -> list[RateLimitResult]:
    """One result per ``(limiter, key, cost)``; consumed all together or not at all.

    When the batch is denied, limits that would have passed report ``allowed=True`` with
    nothing taken from them.
    """
    if len(items) == 1:
        limiter, key, cost = items[0]
        return [limiter.hit(key, endpoint, cost)]
    return _many(items)


async def ahit_all(items: list[Item], endpoint: str | None = None) -> list[RateLimitResult]:
    """:func:`hit_all` for async callers: awaits a store's ``ahit``/``ahit_many`` if it has one.

    The embedded store answers in well under a microsecond and is called inline; a networked
    store (Redis) provides coroutine methods so concurrent requests overlap their round trips.
    """
    limiter = items[0][0]
    if len(items) == 1:
        ahit = getattr(limiter, "ahit", None)
        if ahit is not None:
            _, key, cost = items[0]
            return [await ahit(key, endpoint, cost)]
    else:
        ahit_many = getattr(type(limiter), "ahit_many", None)
        if ahit_many is not None:
            return list(await ahit_many(items))
    return hit_all(items, endpoint)


class Check:
    """The decision for one request under several rules, and the responses it implies."""

    __slots__ = ("config", "costs", "denied", "identities", "results", "rules", "state")

    rules: list[Rule]
    results: list[RateLimitResult]
    identities: list[str]
    denied: bool
    config: FluxConfig

    def __init__(
        self,
        rules: list[Rule],
        identities: list[str],
        results: list[RateLimitResult],
        state: RequestState | None = None,
        costs: Sequence[int] = (),
    ) -> None:
        """``state``: what a middleware attached to this request (its limits come first);
        ``costs``: what each hit took (to give back, see ``deduct_when``)."""
        self.rules = rules
        self.costs = costs
        self.identities = identities
        self.results = results
        self.state = state
        self.denied = False
        for result in results:
            if not result.allowed:
                self.denied = True
                break
        self.config = rules[0].limit.config

    @property
    def applied(self) -> list[AppliedLimit]:
        """Every limit that applied to the request: the middleware's, then these rules'."""
        own = [
            AppliedLimit(rule.label, rule.limit.limiter.period, result)
            for rule, result in zip(self.rules, self.results)
        ]
        state = self.state
        return [*state.applied, *own] if state is not None else own

    @property
    def jitter_max_ms(self) -> int:
        """Jitter for ``Retry-After``: ``[flux] jitter_max_ms`` when jitter is enabled."""
        settings = self.config.flux
        return settings.jitter_max_ms if settings.jitter_enabled else 0

    @property
    def headers_on_success(self) -> bool:
        """Whether allowed responses carry the headers (``[flux] headers_on_success``)."""
        return self.config.flux.headers_on_success

    def headers(self) -> dict[str, str]:
        """Every rate-limit header for this request (``Retry-After`` jittered when denied)."""
        if len(self.rules) == 1 and (self.state is None or not self.state.applied):
            # One limit, the usual case: its header parts were prepared with the rule.
            rule = self.rules[0]
            jitter = self.jitter_max_ms if self.denied else 0
            result = self.results[0]
            return limit_headers(rule.quoted_label, rule.window_s, result, jitter_max_ms=jitter)
        return build_headers(self.applied, jitter_max_ms=self.jitter_max_ms)

    def header_items(self, raw: bool = False) -> list[tuple[Any, Any]]:
        """:meth:`headers` as ``(name, value)`` pairs; with ``raw``, lower-cased names and
        values in bytes, as an ASGI header list holds them.

        For one allowed limit, the usual case on every request, the pairs are rendered by
        :meth:`RateLimitResult.header_items` in one native call.
        """
        if not self.denied and len(self.rules) == 1:
            state = self.state
            if state is None or not state.applied:
                rule = self.rules[0]
                return self.results[0].header_items(rule.quoted_label, rule.window_s, raw)
        items = self.headers().items()
        if raw:
            return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in items]
        return list(items)

    def deny(self, integration: Integration) -> Any:
        """The framework's 429 response: JSON body and headers telling the same wait."""
        headers = self.headers()
        return integration.denied(denied_body(int(headers[RETRY_AFTER])), headers)

    def exception(self) -> RateLimitExceeded:
        """The error for a plain function call: the denying limit that waits longest."""
        denied = [
            (result, f"{rule.bucket}:{identity}")
            for rule, identity, result in zip(self.rules, self.identities, self.results)
            if not result.allowed
        ]
        result, key = max(denied, key=lambda pair: pair[0].retry_after)
        return RateLimitExceeded(key, result.retry_after, result=result)


class Plan(NamedTuple):
    """The rules that apply to one call, their ``(limiter, key, cost)`` items and identities."""

    rules: list[Rule]
    items: list[Item]
    identities: list[str]


def plan(
    rules: Sequence[Rule],
    integration: Integration | None,
    request: Any,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
) -> Plan:
    """Select the rules for this call (by method) and resolve identities and costs."""
    if len(rules) == 1:  # the usual case, without the bookkeeping below
        rule = rules[0]
        if rule.methods is not None and not _method_in(rule.methods, integration, request):
            return Plan([], [], [])
        identity = rule.identify(integration, request, args, kwargs)
        item = (rule.limit.limiter, identity, rule.cost_for(request, args, kwargs))
        return Plan([rule], [item], [identity])
    chosen = Plan([], [], [])
    # Limits with the same key spec share one identity: resolve it once.
    resolved: dict[int, str] = {}
    for rule in rules:
        if rule.methods is not None and not _method_in(rule.methods, integration, request):
            continue
        known = resolved.get(id(rule.identify))
        if known is not None:
            identity = known
        else:
            identity = rule.identify(integration, request, args, kwargs)
            resolved[id(rule.identify)] = identity
        chosen.rules.append(rule)
        chosen.items.append((rule.limit.limiter, identity, rule.cost_for(request, args, kwargs)))
        chosen.identities.append(identity)
    return chosen


def _method_in(methods: frozenset[str], integration: Integration | None, request: Any) -> bool:
    """Whether the request's method is one of ``methods`` (plain calls have none: yes)."""
    return integration is None or integration.method(request) in methods


def _state(integration: Integration | None, request: Any) -> RequestState | None:
    return integration.state(request) if integration is not None else None


def _names(rules: list[Rule]) -> list[str]:
    return [rule.bucket for rule in rules]


def _report_failure(
    chosen: Plan, error: BaseException, started: float, endpoint: str | None
) -> None:
    """Report a hit that raised (fail closed) to analytics, for sync and async alike."""
    report_error(_names(chosen.rules), chosen.identities, error, perf_counter() - started, endpoint)


def _checked(
    chosen: Plan,
    results: Any,
    started: float,
    endpoint: str | None,
    integration: Integration | None,
    request: Any,
) -> Check:
    """Report the decisions to analytics and wrap them, for sync and async alike."""
    report(_names(chosen.rules), chosen.identities, results, perf_counter() - started, endpoint)
    costs = [cost for _, _, cost in chosen.items]
    return Check(chosen.rules, chosen.identities, results, _state(integration, request), costs)


_NO_KWARGS: Mapping[str, Any] = {}


def _evaluate_one(
    rule: Rule,
    integration: Integration | None,
    request: Any,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    endpoint: str | None,
) -> Check | Unavailable | None:
    """:func:`evaluate` for a single rule, the usual case, without a plan to build."""
    if rule.methods is not None and not _method_in(rule.methods, integration, request):
        return _pending_alone(integration, request, endpoint)
    try:
        identity, result, cost = rule.hit(integration, request, args, kwargs, endpoint)
    except (StoreUnavailable, BadCost) as error:
        return unavailable([rule], integration, request, error)
    state = integration.state(request) if integration is not None else None
    return Check([rule], [identity], [result], state, (cost,))


def _store_of(rule: Rule) -> tuple[str, int]:
    """Which store a rule's hits go to: rules of one store can be hit all-or-nothing."""
    limiter = rule.limit.limiter
    return limiter.storage, id(limiter.store)


def _with_pending(
    rules: Sequence[Rule], integration: Integration | None, request: Any, endpoint: str | None
) -> tuple[Sequence[Rule], Check | Unavailable | None]:
    """``rules`` with the middleware's pending rule first (taken off the request), to be hit
    together. A pending rule on another store than the view's is hit alone first: a refusal
    is the answer; else its result joins the request's applied limits."""
    state = integration.state(request) if integration is not None else None
    if state is None or state.pending is None:
        return rules, None
    pending: list[Rule] = state.pending
    state.pending = None
    store = _store_of(pending[0])
    if all(_store_of(rule) == store for rule in (*pending, *rules)):
        return [*pending, *rules], None
    check = evaluate(pending, integration, request, (), _NO_KWARGS, endpoint)
    if check is None or check.denied or not isinstance(check, Check):
        return rules, check
    state.applied.extend(
        AppliedLimit(rule.label, rule.limit.limiter.period, result)
        for rule, result in zip(check.rules, check.results)
    )
    return rules, None


def _pending_alone(
    integration: Integration | None, request: Any, endpoint: str | None
) -> Check | Unavailable | None:
    """When none of the view's own rules applies (methods), its middleware's pending rule is
    still counted, alone."""
    state = integration.state(request) if integration is not None else None
    if state is None or state.pending is None:
        return None
    pending: list[Rule] = state.pending
    state.pending = None
    return evaluate(pending, integration, request, (), _NO_KWARGS, endpoint)


def unavailable(
    rules: Sequence[Rule],
    integration: Integration | None,
    request: Any,
    error: StoreUnavailable | BadCost,
) -> Unavailable | None:
    """The answer when no decision could be made: the store failed and the limit fails
    closed (a 503), or a cost callable returned what no limit counts (logged; the request
    passes uncounted when every limit fails open, else a 503). A plain function call (no
    integration) raises the error, as it always did."""
    if isinstance(error, BadCost):
        LOG.error("flux: %s", error)
        if all(_fails_open(rule) for rule in rules):
            return None
    if integration is None:
        raise error
    hook = next((rule.on_unavailable for rule in rules if rule.on_unavailable), None)
    return Unavailable(error, request, hook, integration.state(request))


def _fails_open(rule: Rule) -> bool:
    """The rule's failure policy: its limiter's own, else ``[flux] fail_silently``."""
    limiter = rule.limit.limiter
    own = getattr(limiter, "fail_silently", None)
    return bool(rule.limit.config.flux.fail_silently if own is None else own)


def evaluate(
    rules: Sequence[Rule],
    integration: Integration | None,
    request: Any,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    endpoint: str | None = None,
) -> Check | Unavailable | None:
    """Apply ``rules`` to one call, all or nothing; None when no rule applies to it, an
    :class:`Unavailable` when the store failed and the limits fail closed.

    A middleware's rule left pending on the request is counted here with ``rules``, in the
    same all-or-nothing hit."""
    rules, early = _with_pending(rules, integration, request, endpoint)
    if early is not None:
        return early
    if len(rules) == 1:
        return _evaluate_one(rules[0], integration, request, args, kwargs or _NO_KWARGS, endpoint)
    try:
        chosen = plan(rules, integration, request, args, kwargs or {})
    except BadCost as error:
        return unavailable(rules, integration, request, error)
    if not chosen.rules:
        return None
    started = perf_counter()
    try:
        results = hit_all(chosen.items, endpoint)
    except Exception as error:
        _report_failure(chosen, error, started, endpoint)
        if isinstance(error, StoreUnavailable):
            return unavailable(chosen.rules, integration, request, error)
        raise
    return _checked(chosen, results, started, endpoint, integration, request)


async def aevaluate(
    rules: Sequence[Rule],
    integration: Integration | None,
    request: Any,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    endpoint: str | None = None,
) -> Check | Unavailable | None:
    """:func:`evaluate` for async callers (see :func:`ahit_all`)."""
    rules, early = _with_pending(rules, integration, request, endpoint)
    if early is not None:
        return early
    if len(rules) == 1 and not rules[0].limit.awaitable:  # the embedded store: inline
        return _evaluate_one(rules[0], integration, request, args, kwargs or _NO_KWARGS, endpoint)
    try:
        chosen = plan(rules, integration, request, args, kwargs or {})
    except BadCost as error:
        return unavailable(rules, integration, request, error)
    if not chosen.rules:
        return None
    started = perf_counter()
    try:
        results = await ahit_all(chosen.items, endpoint)
    except Exception as error:
        _report_failure(chosen, error, started, endpoint)
        if isinstance(error, StoreUnavailable):
            return unavailable(chosen.rules, integration, request, error)
        raise
    return _checked(chosen, results, started, endpoint, integration, request)
