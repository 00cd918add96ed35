"""The answer when no limit could decide (docs/architecture.md, "Failures"): the store failed
and a limit fails closed, or a cost callable returned what no limit counts."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from flux.integrations._common import Integration
from flux.integrations._rule import BadCost, Rule
from flux.integrations._unavailable import StoreUnavailable, Unavailable

__all__ = ["fails_open", "unavailable"]

LOG = logging.getLogger("flux")


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
        if all(fails_open(rule) for rule in rules):
            return None
    if integration is None:
        raise error
    hook = next((rule.on_unavailable for rule in rules if rule.on_unavailable), None)
    return Unavailable(error, request, hook, integration.state(request))


def fails_open(rule: Rule) -> bool:
    """The rule's failure policy: its limiter's own, else ``[flux] fail_silently``."""
    limiter = rule.limit.limiter
    own = getattr(limiter, "fail_silently", None)
    return bool(rule.limit.config.flux.fail_silently if own is None else own)
