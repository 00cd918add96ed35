"""Limits chosen per request: ``rate_limit(limit=callable)``.

The callable receives the request (after the framework's authentication: Django/DRF
``request.user``, Starlette ``scope["user"]``, Flask ``g``/``current_user``) and returns a rate
string (``"1000/hour"``), a preset name (``"pro"``, a ``[rate_limits.pro]`` tier of flux.toml)
or None (this request is not limited). A plain function's callable receives the call's
arguments.

Each distinct answer is built into its rules once and kept: a request pays one dictionary
lookup, never a limiter build. Each answer is its own bucket: a preset is named by itself
(shared by every view that chooses it, as ``rate_limit("pro")`` is); a rate string by the
view's bucket and the quota (``app.views.search[1000/3600s]``). So a client whose tier changes
mid-window starts the new tier from that tier's own state for it (fresh if it never used it),
and its count in the old tier stays until it expires: moving back within the window resumes
it, so switching tiers can never be used to reset a count.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from flux.integrations._declared import limits_for
from flux.integrations._policies import exempt_addresses
from flux.integrations._rule import BadCost, Rule
from flux.rates import is_rate_string

if TYPE_CHECKING:
    from flux.integrations._common import Integration

__all__ = ["BadLimit", "Chooser", "LimitChoice"]

LimitChoice = Callable[..., Any]

#: Distinct answers one view may give before flux refuses more: a limit per user id (rather
#: than per tier) would otherwise build a limiter per client and never free it.
MAX_CHOICES = 1024


class BadLimit(BadCost):
    """A ``limit`` callable returned what names no limit (not a str, an unknown preset, a
    malformed rate string, too many distinct answers). Logged; the request is passed or
    refused as the view's failure policy says, like a bad cost."""


class Chooser:
    """One declaration's per-request choice of limit, for one view (its bucket)."""

    def __init__(self, declaration: Any, bucket: str, label: str) -> None:
        """``declaration``: the ``RateLimit`` holding the callable and its other settings."""
        self.declaration = declaration
        self.choose: LimitChoice = declaration.choose
        self.bucket = bucket
        self.label = label
        #: Rules of every answer seen so far (read on every request: see ``resolve``).
        self.known: dict[str, list[Rule]] = {}
        self._lock = threading.Lock()
        # The same for every answer: exemptions belong to the declaration and its config.
        self.may_exempt = declaration.exempt_when is not None or (
            exempt_addresses(declaration.config) is not None
        )

    def rules(
        self,
        integration: Integration | None,
        request: Any,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
    ) -> list[Rule]:
        """The rules this call is limited by (``[]``: not limited)."""
        spec = self.choose(request) if integration is not None else self.choose(*args, **kwargs)
        found = self.known.get(spec) if type(spec) is str else None
        return found if found is not None else self.resolve(spec)

    def resolve(self, spec: Any) -> list[Rule]:
        """The rules of answer ``spec``, built on first sight (``[]`` for None)."""
        if spec is None:
            return []
        where = f"the limit callable of {self.bucket!r}"
        if not isinstance(spec, str):
            raise BadLimit(
                f"{where} returned {spec!r}: expected a rate string, a preset name or None"
            )
        with self._lock:
            known = self.known.get(spec)
            if known is not None:
                return known
            if len(self.known) >= MAX_CHOICES:
                raise BadLimit(
                    f"{where} gave more than {MAX_CHOICES} distinct limits: return a tier "
                    "(a preset or a rate string), and let the key tell clients apart"
                )
            declaration = self.declaration
            try:
                limits = limits_for(
                    spec,
                    burst=declaration.burst,
                    policy=declaration.policy,
                    config=declaration.config,
                )
            except ValueError as error:  # ConfigError (unknown preset) is a ValueError too
                raise BadLimit(f"{where} returned {spec!r}: {error}") from None
            rules = []
            for limit in limits:
                if is_rate_string(spec):
                    bucket = f"{self.bucket}[{limit.describe()}]"
                    label = f"{self.label}[{limit.describe()}]"
                else:
                    bucket = label = limit.name or spec
                rules.append(declaration.rule(limit, bucket=bucket, label=label))
            self.known[spec] = rules
            return rules
