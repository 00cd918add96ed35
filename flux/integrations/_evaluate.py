"""The request path, top to bottom (docs/architecture.md, "One hit"): the rules that apply to
a call, their identities and costs, one all-or-nothing hit, and the :class:`Check` that
answers it.

:func:`evaluate` (and :func:`aevaluate`) take the rules a view or middleware declared, add a
middleware's rules left pending on the request (:mod:`flux.integrations._pending`), and return
the :class:`Check`, an :class:`Unavailable` when no limit could decide, or None when no rule
applies. A single rule takes :meth:`Rule.hit`, the one short lane; several go through a
:class:`Plan` and :func:`hit_all`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from time import perf_counter
from typing import Any, NamedTuple

from flux.integrations._check import Check
from flux.integrations._common import Integration
from flux.integrations._failure import unavailable
from flux.integrations._hit import Item, ahit_all, hit_all
from flux.integrations._pending import note_applied, one_store, take_pending
from flux.integrations._report import report, report_error
from flux.integrations._rule import BadCost, Rule
from flux.integrations._unavailable import StoreUnavailable, Unavailable

__all__ = ["Plan", "aevaluate", "checked", "evaluate", "plan", "report_failure"]

_NO_KWARGS: Mapping[str, Any] = {}


class Plan(NamedTuple):
    """The rules that apply to one call, their ``(limiter, key, cost)`` items and identities."""

    rules: list[Rule]
    items: list[Item]
    identities: list[str]


def _method_in(methods: frozenset[str], integration: Integration | None, request: Any) -> bool:
    """Whether the request's method is one of ``methods`` (plain calls have none: yes)."""
    return integration is None or integration.method(request) in methods


def plan(
    rules: Sequence[Rule],
    integration: Integration | None,
    request: Any,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
) -> Plan:
    """Select the rules for this call (by method) and resolve identities and costs.

    (A single rule on the embedded store never comes here: it takes :meth:`Rule.hit`.)"""
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


def _names(rules: list[Rule]) -> list[str]:
    return [rule.bucket for rule in rules]


def report_failure(
    chosen: Plan, error: BaseException, started: float, endpoint: str | None
) -> None:
    """Report a hit that raised (fail closed) to analytics, for sync and async alike."""
    report_error(_names(chosen.rules), chosen.identities, error, perf_counter() - started, endpoint)


def checked(
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
    state = integration.state(request) if integration is not None else None
    return Check(chosen.rules, chosen.identities, results, state, costs)


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


def _with_pending(
    rules: Sequence[Rule], integration: Integration | None, request: Any, endpoint: str | None
) -> tuple[Sequence[Rule], Check | Unavailable | None]:
    """``rules`` with the middleware's pending rule first (taken off the request), to be hit
    together. A pending rule on another store than the view's is hit alone first: a refusal
    is the answer; else its result joins the request's applied limits."""
    state, pending = take_pending(integration, request)
    if state is None or pending is None:
        return rules, None
    if one_store(pending, rules):
        return [*pending, *rules], None
    check = evaluate(pending, integration, request, (), _NO_KWARGS, endpoint)
    if check is None or check.denied or not isinstance(check, Check):
        return rules, check
    note_applied(state, check.rules, check.results)
    return rules, None


def _pending_alone(
    integration: Integration | None, request: Any, endpoint: str | None
) -> Check | Unavailable | None:
    """When none of the view's own rules applies (methods), its middleware's pending rule is
    still counted, alone."""
    _, pending = take_pending(integration, request)
    if pending is None:
        return None
    return evaluate(pending, integration, request, (), _NO_KWARGS, endpoint)


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
        report_failure(chosen, error, started, endpoint)
        if isinstance(error, StoreUnavailable):
            return unavailable(chosen.rules, integration, request, error)
        raise
    return checked(chosen, results, started, endpoint, integration, request)


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
        report_failure(chosen, error, started, endpoint)
        if isinstance(error, StoreUnavailable):
            return unavailable(chosen.rules, integration, request, error)
        raise
    return checked(chosen, results, started, endpoint, integration, request)
