"""The decision for one request under its limits, and the responses it implies
(docs/architecture.md, "One hit", step 5): the informational headers of an allowed request,
the 429 of a denied one, the exception of a denied plain call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flux.config import FluxConfig
from flux.exceptions import RateLimitExceeded
from flux.headers import RETRY_AFTER, AppliedLimit, build_headers, limit_headers
from flux.integrations._common import Integration, RequestState, denied_body
from flux.integrations._rule import Rule
from flux.limiter import RateLimitResult

__all__ = ["Check"]


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
