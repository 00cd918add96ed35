"""A declared limit applied to requests: which bucket, which identity, what cost, which methods.

A :class:`Rule` is settled when a view is decorated or a middleware is built; per request it
resolves the identity and the cost (docs/architecture.md, "One hit", steps 2 and 3) and, for a
single limit, makes the hit itself (:meth:`Rule.hit`, the one short lane every singly-limited
request takes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from time import perf_counter
from typing import Any, Union

from flux._signatures import positional_arity
from flux.headers import sf_string, window_seconds
from flux.identity import Identifier
from flux.integrations import _declared, _report
from flux.integrations._common import Integration
from flux.integrations._declared import Limit
from flux.integrations._policies import (
    DeductWhen,
    ExemptWhen,
    OnLimited,
    check_callable,
    exempt_addresses,
)
from flux.integrations._report import report_error, report_one
from flux.integrations._unavailable import OnUnavailable
from flux.limiter import RateLimitResult

__all__ = ["BadCost", "Cost", "Rule", "check_cost", "check_methods"]

Cost = Union[int, Callable[..., int]]


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
        # 0: called with nothing; else with the request (or a plain call's arguments).
        self._cost_arity = positional_arity(cost) if callable(cost) else 0
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
        limiter = limit._limiter if limit._generation == _declared._generation else limit.limiter
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
