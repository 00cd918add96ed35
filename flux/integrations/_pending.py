"""A middleware's limit left pending on a request, for the view to count with its own
(docs/architecture.md, "Middleware and decorator together").

When the view a request is routed to counts its own hits (it is wrapped by ``rate_limit``),
the middleware leaves its rules on the request's :class:`~flux.integrations.RequestState`
instead of hitting them; the view takes them off and hits them together with its own, all or
nothing, so a request the view refuses costs the middleware's limit nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flux.headers import AppliedLimit
from flux.integrations._common import Integration, RequestState
from flux.integrations._rule import Rule
from flux.limiter import RateLimitResult

__all__ = ["LIMITED_FLAG", "counts_its_own_hits", "note_applied", "one_store", "take_pending"]

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


def take_pending(
    integration: Integration | None, request: Any
) -> tuple[RequestState | None, list[Rule] | None]:
    """The request's state and the middleware's pending rules, taken off it (counted once)."""
    state = integration.state(request) if integration is not None else None
    if state is None or state.pending is None:
        return state, None
    pending: list[Rule] = state.pending
    state.pending = None
    return state, pending


def _store_of(rule: Rule) -> tuple[str, int]:
    """Which store a rule's hits go to: rules of one store can be hit all-or-nothing."""
    limiter = rule.limit.limiter
    return limiter.storage, id(limiter.store)


def one_store(pending: Sequence[Rule], rules: Sequence[Rule]) -> bool:
    """Whether the pending rules and the view's own are on one store (so one hit takes all)."""
    store = _store_of(pending[0])
    return all(_store_of(rule) == store for rule in (*pending, *rules))


def note_applied(
    state: RequestState, rules: Sequence[Rule], results: Sequence[RateLimitResult]
) -> None:
    """Record pending rules hit on their own (another store) among the request's applied
    limits, so the view's headers list them too."""
    state.applied.extend(
        AppliedLimit(rule.label, rule.limit.limiter.period, result)
        for rule, result in zip(rules, results)
    )
