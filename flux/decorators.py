"""``rate_limit``: one decorator for Django, DRF, FastAPI, Starlette, Flask and plain functions.

The wrapper finds the request among the call's arguments (or Flask's request context), picks
the integration from the request's type, counts the hit, and answers a denied call with the
framework's own JSON 429 (plain functions raise :class:`~flux.RateLimitExceeded`). Allowed
responses get the informational headers (``[flux] headers_on_success``).

Everything that can be settled is settled at decoration time: the configuration is read
(:func:`flux.get_config`), the :class:`~flux.RateLimiter` is built, a preset name is looked
up (an unknown one is a ConfigError there, not at the first request), and the key spec is
checked. Per call, the wrapper only resolves the identity and makes one hit.

Stacked ``rate_limit`` decorators collapse into one wrapper whose limits are checked together,
all or nothing: when one denies, the others are not consumed. Put them next to each other (a
different decorator in between splits them into separately checked groups).
"""

from __future__ import annotations

import functools
import inspect
import sys
import weakref
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, overload

from flux._policy_wrappers import policy_wrapper
from flux._signatures import positional_arity
from flux._wait import Deadline
from flux._wait_calls import waiting_wrapper
from flux.config import FluxConfig, RateLimitPolicy, get_config
from flux.identity import Identifier, KeySpec
from flux.integrations import find_request
from flux.integrations._check import Check
from flux.integrations._chosen import Chooser, LimitChoice
from flux.integrations._declared import Limit, limits_for, named_rates
from flux.integrations._evaluate import aevaluate, evaluate
from flux.integrations._failure import unavailable
from flux.integrations._pending import LIMITED_FLAG
from flux.integrations._policies import (
    DeductWhen,
    ExemptWhen,
    OnLimited,
    alimited,
    asettle,
    check_callable,
    limited,
    settle,
)
from flux.integrations._rule import BadCost, Cost, Rule, check_cost, check_methods
from flux.integrations._unavailable import OnUnavailable, StoreUnavailable, Unavailable
from flux.limiter import RateLimiter
from flux.rates import is_rate_string

__all__ = ["RateLimit", "limits_of", "rate_limit"]

F = TypeVar("F", bound=Callable[..., Any])


class RateLimit:
    """One declared limit, applied by calling it on a function (what ``rate_limit`` returns).

    ``limiter`` is the :class:`~flux.RateLimiter` every decorated call counts against (for
    an unnamed declaration applied to several functions, the latest one's: each function has
    its own bucket).
    """

    name: str | None
    limits: tuple[Limit, ...]
    choose: LimitChoice | None
    identify: Identifier
    cost: Cost
    methods: frozenset[str] | None

    def __init__(
        self,
        name: str | None = None,
        *,
        requests: int | None = None,
        period: float | None = None,
        burst: int | None = None,
        policy: RateLimitPolicy | str | None = None,
        key: KeySpec = None,
        cost: Cost = 1,
        methods: Iterable[str] | str | None = None,
        config: FluxConfig | None = None,
        ipv6_prefix: int | None = None,
        on_unavailable: OnUnavailable | None = None,
        limit: str | LimitChoice | None = None,
        exempt_when: ExemptWhen | None = None,
        deduct_when: DeductWhen | None = None,
        on_limited: OnLimited | None = None,
        wait: bool = False,
        wait_timeout: float | None = None,
    ) -> None:
        """Build the limiters and check every argument now (see :func:`rate_limit`)."""
        self.wait = bool(wait)
        self.wait_timeout = wait_timeout
        if wait_timeout is not None:
            Deadline(wait_timeout)  # a bad timeout fails here, not at the first call
        self.on_unavailable = check_callable(on_unavailable, "on_unavailable")
        self.exempt_when = check_callable(exempt_when, "exempt_when")
        self.deduct_when = check_callable(deduct_when, "deduct_when")
        self.on_limited = check_callable(on_limited, "on_limited")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a preset name (str) or None, got {name!r}")
        if name is not None and is_rate_string(name):  # rate_limit("5/minute")
            if limit is not None:
                raise TypeError(f"the rate is given twice: {name!r} and limit={limit!r}")
            name, limit = None, name
        if limit is not None and not isinstance(limit, str) and not callable(limit):
            raise TypeError(
                f"limit must be a rate string, a preset name or a callable, got {limit!r}"
            )
        if isinstance(limit, str) and not is_rate_string(limit):
            if name is not None:
                raise TypeError(f"name a preset once: {name!r} or limit={limit!r}")
            name, limit = limit, None  # limit="pro" is rate_limit("pro")
        self.config = config = config if config is not None else get_config()
        self.burst, self.policy = burst, policy
        # A named declaration (a preset, or a name given to a rate string) shares its buckets
        # with every view that names it; an unnamed one is its view's own.
        self.name = name
        self.choose = limit if callable(limit) else None
        if self.choose is not None:
            if requests is not None or period is not None:
                raise TypeError("a limit chosen per request takes no requests or period")
            self.limits = ()
        elif isinstance(limit, str) and name is not None:
            self.limits = named_rates(name, limit, burst=burst, policy=policy, config=config)
        else:
            self.limits = limits_for(
                limit if isinstance(limit, str) else name,
                requests=requests,
                period=period,
                burst=burst,
                policy=policy,
                config=config,
            )
        self.identify = Identifier(key, config=config, ipv6_prefix=ipv6_prefix)
        self.cost = check_cost(cost)
        self.methods = check_methods(methods)

    @property
    def limit(self) -> Limit:
        """The (first) limit of this declaration (a limit chosen per request has none)."""
        if not self.limits:
            raise TypeError("this declaration's limit is chosen per request")
        return self.limits[0]

    @property
    def limiter(self) -> RateLimiter:
        """The limiter this declaration counts against (the first, for several rates)."""
        return self.limit.limiter

    def rule(self, limit: Limit, *, bucket: str, label: str) -> Rule:
        """A rule applying ``limit`` with this declaration's identity, cost and policies."""
        return Rule(
            limit,
            bucket=bucket,
            label=label,
            identify=self.identify,
            cost=self.cost,
            methods=self.methods,
            on_unavailable=self.on_unavailable,
            exempt_when=self.exempt_when,
            deduct_when=self.deduct_when,
            on_limited=self.on_limited,
        )

    def __call__(self, func: F) -> F:
        """Decorate ``func`` (merging with ``rate_limit`` decorators already on it)."""
        if inspect.isclass(func):
            raise TypeError(
                "rate_limit decorates functions and methods; for a class-based view decorate "
                "its dispatch/get method, or use django's method_decorator"
            )
        declared: tuple[RateLimit, ...] = (self,)
        target: Callable[..., Any] = func
        inner = _group_of(func)
        if inner is not None:
            target, below = inner
            declared = (self, *below)
        return _wrap(target, declared)  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"rate_limit({self.limiter!r}, key={self.identify.spec!r})"


@overload
def rate_limit(name: F) -> F: ...


@overload
def rate_limit(
    name: str | None = None,
    *,
    requests: int | None = None,
    period: float | None = None,
    burst: int | None = None,
    policy: RateLimitPolicy | str | None = None,
    key: KeySpec = None,
    cost: Cost = 1,
    methods: Iterable[str] | str | None = None,
    config: FluxConfig | None = None,
    ipv6_prefix: int | None = None,
    on_unavailable: OnUnavailable | None = None,
    limit: str | LimitChoice | None = None,
    exempt_when: ExemptWhen | None = None,
    deduct_when: DeductWhen | None = None,
    on_limited: OnLimited | None = None,
    wait: bool = False,
    wait_timeout: float | None = None,
) -> RateLimit: ...


def rate_limit(
    name: Any = None,
    *,
    requests: int | None = None,
    period: float | None = None,
    burst: int | None = None,
    policy: RateLimitPolicy | str | None = None,
    key: KeySpec = None,
    cost: Cost = 1,
    methods: Iterable[str] | str | None = None,
    config: FluxConfig | None = None,
    ipv6_prefix: int | None = None,
    on_unavailable: OnUnavailable | None = None,
    limit: str | LimitChoice | None = None,
    exempt_when: ExemptWhen | None = None,
    deduct_when: DeductWhen | None = None,
    on_limited: OnLimited | None = None,
    wait: bool = False,
    wait_timeout: float | None = None,
) -> Any:
    """Rate-limit a view, endpoint or function.

    - ``name``: a preset ``[rate_limits.<name>]`` of flux.toml; the explicit ``requests``,
      ``period``, ``burst`` and ``policy`` override it. Without a name, unset values come from
      ``[rate_limit]``. Views decorated with the same name share one bucket. A rate string
      (``"5/minute"``, ``"10/second; 1000/day"``, see :mod:`flux.rates`) in place of the name
      gives the quota instead: several rates are checked together, all or nothing.
    - ``limit``: a rate string, a preset name, or a callable receiving the request (run after
      the framework's authentication) that returns either, or None for "not limited"; see
      :mod:`flux.integrations._chosen` for tiers and what a change of tier does.
    - ``key``: ``None``/``"ip"`` (client IP), ``"user"``, ``"header:<Name>"``, a callable
      taking the request, or a constant string (see :mod:`flux.identity`).
    - ``cost``: hits per call (an int, or a callable taking the request).
    - ``methods``: only these HTTP methods are limited (default: all).
    - ``config``: default :func:`flux.get_config`, read now. ``ipv6_prefix``: count IPv6
      clients per ``/prefix`` network (e.g. 64).
    - ``on_unavailable(request, error)``: the response when the store cannot decide and the
      limit fails closed (``fail_silently = false``); default a 503 with ``Retry-After``.
    - ``exempt_when(request)``: True leaves the request unlimited and uncounted (so does
      ``[flux] exempt_ips``). ``deduct_when(response)``: the hit is taken before the view and
      given back when this returns False (a view that raises keeps it).
      ``on_limited(request, result)``: the response to a refused request (default: the
      framework's handler for RateLimitExceeded if the application has one, else a JSON 429);
      the rate-limit headers are added to it.
    - ``wait``: a denied *plain* call (no web request among its arguments) sleeps until its
      limits allow it, instead of raising :class:`~flux.RateLimitExceeded`: all the
      function's stacked limits are waited for together, all or nothing (as
      :meth:`~flux.RateLimiter.acquire` does for one). ``wait_timeout`` (seconds) bounds the
      wait: past it the call raises. A web request is never held: it gets its 429 at once.

    The limit is named ``name`` or ``module.qualname`` (the bucket), and each client has its
    own state in it: the stored key is ``{key_prefix}{bucket}:{<identity>}:<algorithm>``, as
    analytics and ``flux clear`` show and take it. Also usable bare:
    ``@rate_limit`` applies ``[rate_limit]``.
    """
    if callable(name):  # bare @rate_limit
        return RateLimit()(name)
    return RateLimit(
        name,
        limit=limit,
        requests=requests,
        period=period,
        burst=burst,
        policy=policy,
        key=key,
        cost=cost,
        methods=methods,
        config=config,
        ipv6_prefix=ipv6_prefix,
        on_unavailable=on_unavailable,
        exempt_when=exempt_when,
        deduct_when=deduct_when,
        on_limited=on_limited,
        wait=wait,
        wait_timeout=wait_timeout,
    )


# wrapper -> (original function, its declared limits). Kept outside the wrapper's __dict__:
# functools.update_wrapper (django's method_decorator among others) copies __dict__ onto other
# functions, which must not inherit a group.
_groups: weakref.WeakKeyDictionary[
    Callable[..., Any], tuple[Callable[..., Any], tuple[RateLimit, ...]]
] = weakref.WeakKeyDictionary()


def _group_of(func: Any) -> tuple[Callable[..., Any], tuple[RateLimit, ...]] | None:
    try:
        return _groups.get(func)
    except TypeError:  # not weak-referenceable, so not one of our wrappers
        return None


def limits_of(func: Callable[..., Any]) -> tuple[RateLimit, ...]:
    """The limits a ``rate_limit``-decorated function applies, outermost first (or ``()``)."""
    group = _group_of(func)
    return group[1] if group is not None else ()


def _qualified_name(func: Callable[..., Any]) -> tuple[str, str]:
    """``(module.qualname, label)`` of the view; the class a method runs on, if known."""
    target = func
    while isinstance(target, functools.partial):
        target = target.func
    if inspect.ismethod(target):
        # django's method_decorator hands over partial(bound method): name the view's class,
        # not the base class that defines the method (View.dispatch is everybody's).
        owner = target.__self__ if inspect.isclass(target.__self__) else type(target.__self__)
        method = f"{owner.__qualname__}.{target.__name__}"
        return f"{owner.__module__}.{method}", method
    named = func if getattr(func, "__qualname__", None) else target
    qualname: str = (
        getattr(named, "__qualname__", None)
        or getattr(named, "__name__", None)
        or type(named).__name__
    )
    module = getattr(named, "__module__", None)
    # The label (in headers) drops factory scopes: "create_app.<locals>.view" -> "view".
    return (f"{module}.{qualname}" if module else qualname), qualname.rpartition("<locals>.")[2]


def _rules(func: Callable[..., Any], declared: tuple[RateLimit, ...]) -> list[Rule | Chooser]:
    """One rule per declared limit (or a chooser, for a limit chosen per request); unnamed
    limits of one function get distinct buckets."""
    full, short = _qualified_name(func)
    unnamed = sum(len(d.limits) or 1 for d in declared if d.name is None)
    rules: list[Rule | Chooser] = []
    seen: set[str] = set()
    for declaration in declared:
        if declaration.choose is not None:
            suffix = f"[{len(rules)}]" if len(declared) > 1 else ""
            rules.append(Chooser(declaration, full + suffix, short + suffix))
            continue
        named: list[Limit] = []
        for limit in declaration.limits:
            if declaration.name is not None:
                bucket = label = limit.name or declaration.name
            else:
                suffix = f"[{limit.describe()}]" if unnamed > 1 else ""
                while full + suffix in seen:  # identical quotas twice: still two buckets
                    suffix += "'"
                bucket, label = full + suffix, short + suffix
            seen.add(bucket)
            rule = declaration.rule(limit, bucket=bucket, label=label)
            named.append(rule.limit)
            rules.append(rule)
        # The limits are named by their buckets: the declaration's `limiter` is the one its
        # latest decoration counts against (stacking re-wraps the function with every one).
        declaration.limits = tuple(named)
    return rules


class _Params:
    """Where FastAPI injects the request and sub-response, when the wrapper asked it to."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.signature: inspect.Signature | None = None
        self.request: str | None = None
        self.response: str | None = None
        self.own_request = self.own_response = False
        self.integration: Any = None
        # Only FastAPI reads endpoint signatures; never import it just to look.
        if "fastapi" not in sys.modules or positional_arity(func) is None:
            return
        from flux.integrations import fastapi

        self.signature, self.request, self.response = fastapi.endpoint_signature(func)
        self.own_request = self.request == fastapi.REQUEST_PARAM
        self.own_response = self.response == fastapi.RESPONSE_PARAM
        self.integration = fastapi.INTEGRATION

    def locate(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any, Any]:
        """``(integration, request, sub-response)`` of a call.

        Removes from ``kwargs`` what FastAPI injected for the wrapper alone, so the endpoint
        is called with exactly its own parameters.
        """
        if self.request is None:  # not a FastAPI endpoint: no sub-response
            integration, request = find_request(args, kwargs)
            return integration, request, None
        response = self.response or ""
        sub = kwargs.pop(response, None) if self.own_response else kwargs.get(response)
        if self.own_request:
            request = kwargs.pop(self.request, None)
            if request is not None:
                return self.integration, request, sub
        integration, request = find_request(args, kwargs)
        return integration, request, sub


def _refusing_websockets(func: Callable[..., Any], wrapper: Callable[..., Any]) -> Any:
    """A websocket endpoint's denied connection attempt is refused by sending the 429 before
    ``accept`` (its return value would be dropped): see ``fastapi.refusing_websockets``."""
    from flux.integrations import fastapi

    if not fastapi.is_websocket_endpoint(func):
        return wrapper
    return fastapi.refusing_websockets(wrapper)


def _wrap(func: Callable[..., Any], declared: tuple[RateLimit, ...]) -> Callable[..., Any]:
    sources = _rules(func, declared)
    endpoint = _qualified_name(func)[0]
    params = _Params(func)
    locate = params.locate
    # Settled now: a limit keeps the configuration it was declared with.
    headers_on_success = declared[0].config.flux.headers_on_success
    # Per-request policies (a limit chosen per request, exemptions, deduct_when, on_limited):
    # each call selects its rules and settles its hits after the view. Without any, `rules`
    # is fixed and the call never looks.
    static = [source for source in sources if isinstance(source, Rule)]
    policies = len(static) < len(sources) or any(rule.has_policies for rule in static)
    rules: list[Rule] = static

    # One limit and no methods to select by: most views. Their allowed requests take a short
    # lane, straight from the decision to the response, without a Check.
    lane = rules[0] if not policies and len(rules) == 1 and rules[0].methods is None else None
    quoted_label = lane.quoted_label if lane is not None else ""
    window_s = lane.window_s if lane is not None else 0

    # The two wrappers differ only in awaiting; they run on every request, so each is written
    # out in full rather than through shared helpers (a Python call costs ~0.1 µs here).
    if policies:
        wrapper: Callable[..., Any] = policy_wrapper(
            func, sources, static, locate, endpoint, headers_on_success
        )
    elif inspect.iscoroutinefunction(func):
        if lane is not None and lane.limit.awaitable:
            lane = None  # a Redis round trip: awaited through aevaluate, never inline

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            integration, request, sub = locate(args, kwargs)
            state = integration.state(request) if integration is not None else None
            if (
                lane is not None
                and integration is not None
                and (state is None or state.pending is None)
            ):
                try:
                    identity, result, cost = lane.hit(integration, request, args, kwargs, endpoint)
                except (StoreUnavailable, BadCost) as error:
                    undecided = unavailable(rules, integration, request, error)
                    if undecided is None:  # a bad cost under a limit that fails open
                        return await func(*args, **kwargs)
                    return undecided.deny(integration)
                if state is None and result.allowed:
                    response = await func(*args, **kwargs)
                    if headers_on_success:
                        raw = integration.raw_headers
                        items = result.header_items(quoted_label, window_s, raw)
                        return integration.add_header_items(request, response, items, sub)
                    return response
                check: Check | Unavailable = Check(rules, [identity], [result], state, (cost,))
            else:
                evaluated = await aevaluate(rules, integration, request, args, kwargs, endpoint)
                if evaluated is None:
                    return await func(*args, **kwargs)
                check = evaluated
                if integration is None:  # a plain call: raise, there is no response to make
                    if check.denied:
                        raise check.exception()
                    return await func(*args, **kwargs)
            if check.state is not None:
                # Tell a middleware on this request that the view writes the headers.
                check.state.decorated = True
            if check.denied:
                if isinstance(check, Check):
                    return await alimited(check, integration, request)
                return check.deny(integration)
            response = await func(*args, **kwargs)
            if check.state is not None and isinstance(check, Check):
                # A middleware's rule counted here may give its hit back (its deduct_when).
                response = await asettle(check, integration, response)
            if headers_on_success:
                items = check.header_items(integration.raw_headers)
                return integration.add_header_items(request, response, items, sub)
            return response

        wrapper = async_wrapper
    else:

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            integration, request, sub = locate(args, kwargs)
            state = integration.state(request) if integration is not None else None
            if (
                lane is not None
                and integration is not None
                and (state is None or state.pending is None)
            ):
                try:
                    identity, result, cost = lane.hit(integration, request, args, kwargs, endpoint)
                except (StoreUnavailable, BadCost) as error:
                    undecided = unavailable(rules, integration, request, error)
                    if undecided is None:  # a bad cost under a limit that fails open
                        return func(*args, **kwargs)
                    return undecided.deny(integration)
                if state is None and result.allowed:
                    response = func(*args, **kwargs)
                    if headers_on_success:
                        raw = integration.raw_headers
                        items = result.header_items(quoted_label, window_s, raw)
                        return integration.add_header_items(request, response, items, sub)
                    return response
                check: Check | Unavailable = Check(rules, [identity], [result], state, (cost,))
            else:
                found = evaluate(rules, integration, request, args, kwargs, endpoint)
                if found is None:
                    return func(*args, **kwargs)
                check = found
                if integration is None:  # a plain call: raise, there is no response to make
                    if check.denied:
                        raise check.exception()
                    return func(*args, **kwargs)
            if check.state is not None:
                # Tell a middleware on this request that the view writes the headers.
                check.state.decorated = True
            if check.denied:
                if isinstance(check, Check):
                    return limited(check, integration, request)
                return check.deny(integration)
            response = func(*args, **kwargs)
            if check.state is not None and isinstance(check, Check):
                # A middleware's rule counted here may give its hit back (its deduct_when).
                response = settle(check, integration, response)
            if headers_on_success:
                items = check.header_items(integration.raw_headers)
                return integration.add_header_items(request, response, items, sub)
            return response

        wrapper = sync_wrapper

    waiting = [d for d in declared if d.wait]
    if waiting and len(static) < len(sources):
        raise TypeError("wait=True waits for fixed limits; a limit chosen per request cannot wait")
    if waiting:
        # Any limit of the group asks to wait: the whole group waits, for the shortest
        # timeout any of them gave.
        timeouts = [d.wait_timeout for d in waiting if d.wait_timeout is not None]
        timeout = min(timeouts) if timeouts else None
        wrapper = waiting_wrapper(func, wrapper, rules, locate, endpoint, timeout)
    if "starlette" in sys.modules and inspect.iscoroutinefunction(func):
        wrapper = _refusing_websockets(func, wrapper)
    if params.signature is not None:
        wrapper.__signature__ = params.signature  # type: ignore[attr-defined]
    _groups[wrapper] = (func, declared)
    # In the wrapper's __dict__ on purpose: django's method_decorator copies it onto the
    # method it builds, so a middleware can tell that a view counts its hits itself.
    setattr(wrapper, LIMITED_FLAG, True)
    return wrapper
