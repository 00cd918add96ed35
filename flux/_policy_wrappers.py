"""The ``rate_limit`` wrappers of views with per-request policies.

A view whose limits use a policy (a limit chosen per request, ``exempt_when``, ``[flux]
exempt_ips``, ``deduct_when``, ``on_limited``) selects its rules on every call and may settle
its hits after the view; every other view keeps the wrappers of :mod:`flux.decorators`, which
never look at policies. Like those, these wrappers take a short lane when one rule applies (no
Check, headers rendered natively): a limit chosen per request costs a dictionary lookup and the
callable's own time more than a fixed one (``make bench``, bench_policies.py).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from flux.integrations._check import Check
from flux.integrations._chosen import Chooser
from flux.integrations._evaluate import aevaluate, evaluate
from flux.integrations._failure import unavailable
from flux.integrations._policies import alimited, asettle, is_exempt, limited, settle
from flux.integrations._rule import BadCost, Rule
from flux.integrations._unavailable import StoreUnavailable, Unavailable

__all__ = ["policy_wrapper", "select"]

Locate = Callable[[tuple[Any, ...], dict[str, Any]], tuple[Any, Any, Any]]


def select(
    sources: list[Rule | Chooser],
    integration: Any,
    request: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> list[Rule]:
    """The rules that apply to this call: limits chosen now, exempt requests left out.

    Raises :class:`~flux.integrations._chosen.BadLimit` (a BadCost) when a limit callable
    names no limit."""
    chosen: list[Rule] = []
    for source in sources:
        rules: Sequence[Rule]
        if isinstance(source, Chooser):
            rules = source.rules(integration, request, args, kwargs)
        else:
            rules = (source,)
        for rule in rules:
            exempt = rule.may_exempt and request is not None
            if not exempt or not is_exempt(rule, integration, request):
                chosen.append(rule)
    return chosen


def policy_wrapper(
    func: Callable[..., Any],
    sources: list[Rule | Chooser],
    static: list[Rule],
    locate: Locate,
    endpoint: str,
    headers_on_success: bool,
) -> Callable[..., Any]:
    """The wrapper of ``func`` under ``sources`` (rules and choosers, outermost first)."""
    only = sources[0] if len(sources) == 1 and type(sources[0]) is Chooser else None
    if only is not None:
        choose, known, only_exempts = only.choose, only.known, only.may_exempt
    # As in flux.decorators, the two wrappers differ only in awaiting and are written out in
    # full: they run on every request.
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_policies(*args: Any, **kwargs: Any) -> Any:
            integration, request, sub = locate(args, kwargs)
            state = integration.state(request) if integration is not None else None
            pending = state is not None and state.pending is not None
            try:
                if only is None:
                    now = select(sources, integration, request, args, kwargs)
                else:  # one limit chosen per request, the usual case: `select`, inline
                    spec = choose(request) if integration is not None else choose(*args, **kwargs)
                    found = known.get(spec) if type(spec) is str else None
                    now = found if found is not None else only.resolve(spec)
                    exempt = only_exempts and now and request is not None
                    if exempt and is_exempt(now[0], integration, request):
                        now = []
            except BadCost as error:
                undecided = unavailable(static, integration, request, error)
                if undecided is None:
                    return await func(*args, **kwargs)
                return undecided.deny(integration)
            check: Check | Unavailable | None
            one = now[0] if len(now) == 1 else None
            if (
                one is not None
                and integration is not None
                and not pending
                and one.methods is None
                and not one.limit.awaitable
            ):
                try:
                    identity, result, cost = one.hit(integration, request, args, kwargs, endpoint)
                except (StoreUnavailable, BadCost) as error:
                    undecided = unavailable(now, integration, request, error)
                    if undecided is None:
                        return await func(*args, **kwargs)
                    return undecided.deny(integration)
                if state is None and result.allowed:
                    response = await func(*args, **kwargs)
                    if one.deduct_when is not None:
                        taken = Check(now, [identity], [result], None, (cost,))
                        response = await asettle(taken, integration, response)
                    if headers_on_success:
                        raw = integration.raw_headers
                        items = result.header_items(one.quoted_label, one.window_s, raw)
                        return integration.add_header_items(request, response, items, sub)
                    return response
                check = Check(now, [identity], [result], state, (cost,))
            elif not now and not pending:
                return await func(*args, **kwargs)  # exempt, or no limit chosen
            else:
                check = await aevaluate(now, integration, request, args, kwargs, endpoint)
                if check is None:
                    return await func(*args, **kwargs)
                if integration is None:
                    if check.denied:
                        raise check.exception()
                    return await func(*args, **kwargs)
            if check.state is not None:
                check.state.decorated = True
            if check.denied:
                if isinstance(check, Check):
                    return await alimited(check, integration, request)
                return check.deny(integration)
            response = await func(*args, **kwargs)
            if isinstance(check, Check):
                response = await asettle(check, integration, response)
            if headers_on_success:
                items = check.header_items(integration.raw_headers)
                return integration.add_header_items(request, response, items, sub)
            return response

        return async_policies

    @functools.wraps(func)
    def sync_policies(*args: Any, **kwargs: Any) -> Any:
        integration, request, sub = locate(args, kwargs)
        state = integration.state(request) if integration is not None else None
        pending = state is not None and state.pending is not None
        try:
            if only is None:
                now = select(sources, integration, request, args, kwargs)
            else:  # one limit chosen per request, the usual case: `select`, inline
                spec = choose(request) if integration is not None else choose(*args, **kwargs)
                found = known.get(spec) if type(spec) is str else None
                now = found if found is not None else only.resolve(spec)
                exempt = only_exempts and now and request is not None
                if exempt and is_exempt(now[0], integration, request):
                    now = []
        except BadCost as error:
            undecided = unavailable(static, integration, request, error)
            if undecided is None:
                return func(*args, **kwargs)
            return undecided.deny(integration)
        check: Check | Unavailable | None
        one = now[0] if len(now) == 1 else None
        if one is not None and integration is not None and not pending and one.methods is None:
            try:
                identity, result, cost = one.hit(integration, request, args, kwargs, endpoint)
            except (StoreUnavailable, BadCost) as error:
                undecided = unavailable(now, integration, request, error)
                if undecided is None:
                    return func(*args, **kwargs)
                return undecided.deny(integration)
            if state is None and result.allowed:
                response = func(*args, **kwargs)
                if one.deduct_when is not None:
                    taken = Check(now, [identity], [result], None, (cost,))
                    response = settle(taken, integration, response)
                if headers_on_success:
                    raw = integration.raw_headers
                    items = result.header_items(one.quoted_label, one.window_s, raw)
                    return integration.add_header_items(request, response, items, sub)
                return response
            check = Check(now, [identity], [result], state, (cost,))
        elif not now and not pending:
            return func(*args, **kwargs)  # exempt, or no limit chosen
        else:
            check = evaluate(now, integration, request, args, kwargs, endpoint)
            if check is None:
                return func(*args, **kwargs)
            if integration is None:
                if check.denied:
                    raise check.exception()
                return func(*args, **kwargs)
        if check.state is not None:
            check.state.decorated = True
        if check.denied:
            if isinstance(check, Check):
                return limited(check, integration, request)
            return check.deny(integration)
        response = func(*args, **kwargs)
        if isinstance(check, Check):
            response = settle(check, integration, response)
        if headers_on_success:
            items = check.header_items(integration.raw_headers)
            return integration.add_header_items(request, response, items, sub)
        return response

    return sync_policies
