"""What a limit does around its hit, per request: exemptions, counting only some responses,
and the application's own answer to a refused request.

- ``exempt_when(request)``: True leaves the request unlimited and uncounted by that limit;
  ``[flux] exempt_ips`` does the same for clients of those networks (the client address is
  read after ``trusted_proxies``, so a forwarded header cannot claim an exempt address).
- ``deduct_when(response)``: the hit is taken before the view runs (so N concurrent requests
  can never pass more than the limit) and given back after it when this returns False, e.g.
  ``lambda r: r.status_code >= 400`` counts failed logins only.
- ``on_limited(request, result)``: the response to a refused request; without it, the
  framework's own handler for :class:`~flux.RateLimitExceeded` (Flask ``errorhandler``,
  Starlette/FastAPI ``exception_handler``, Django's ``FLUX_ON_LIMITED`` setting), else flux's
  JSON 429. The rate-limit headers are added to whatever answers.

None of this costs a request whose limits use none of it: such a limit keeps the short lane.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flux.config import FluxConfig
from flux.identity import Identifier, normalize_ip

if TYPE_CHECKING:
    from flux.integrations._check import Check
    from flux.integrations._common import Integration
    from flux.integrations._rule import Rule
    from flux.limiter import RateLimitResult

LOG = logging.getLogger("flux")

__all__ = ["DeductWhen", "ExemptWhen", "OnLimited", "exempt_addresses", "limited", "settle"]

ExemptWhen = Callable[[Any], bool]
DeductWhen = Callable[[Any], bool]
OnLimited = Callable[[Any, "RateLimitResult"], Any]


def check_callable(value: Any, what: str) -> Any:
    """``value`` when it is None or callable; else a TypeError naming the argument."""
    if value is not None and not callable(value):
        raise TypeError(f"{what} must be callable, got {value!r}")
    return value


class ExemptAddresses:
    """``[flux] exempt_ips`` of one configuration: whether a request's client is exempt."""

    def __init__(self, config: FluxConfig) -> None:
        """Read the networks and the proxy settings the client address is found with."""
        self.networks = config.flux.exempt_ips
        # The default identity's reading of the client address (trusted proxies honoured).
        self.identify = Identifier(None, config=config)

    def __call__(self, integration: Integration | None, request: Any) -> bool:
        """Whether the client of ``request`` is in an exempt network (plain calls: no)."""
        if integration is None:
            return False
        address = normalize_ip(self.identify.address(integration, request))
        return address is not None and _within(address, self.networks)


@functools.lru_cache(maxsize=4096)
def _within(address: Any, networks: tuple[Any, ...]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


_exempt_by_config: dict[int, tuple[FluxConfig, ExemptAddresses | None]] = {}


def exempt_addresses(config: FluxConfig) -> ExemptAddresses | None:
    """The exempt networks of ``config`` (None when it has none), built once per config."""
    known = _exempt_by_config.get(id(config))
    if known is not None and known[0] is config:
        return known[1]
    found = ExemptAddresses(config) if config.flux.exempt_ips else None
    _exempt_by_config[id(config)] = (config, found)
    return found


def is_exempt(rule: Rule, integration: Integration | None, request: Any) -> bool:
    """Whether ``rule`` leaves this request alone (its ``exempt_when``, or ``exempt_ips``)."""
    addresses = rule.exempt_addresses
    if addresses is not None and addresses(integration, request):
        return True
    when = rule.exempt_when
    return when is not None and bool(when(request))


# --- after the view: give back what the response says should not count -----------------------


def _refunds(check: Check, response: Any) -> list[tuple[Any, str, int]]:
    """``(limiter, identity, cost)`` of every hit of ``check`` its response does not count."""
    out = []
    for rule, identity, result, cost in zip(
        check.rules, check.identities, check.results, check.costs
    ):
        when = rule.deduct_when
        if when is None or not result.allowed or result.fail_open:
            continue  # nothing was taken (denied or failed open), or everything counts
        try:
            counts = bool(when(response))
        except Exception:  # the application's bug: keep the hit, and say so
            LOG.exception("flux: deduct_when of limit %r raised; the hit still counts", rule.bucket)
            continue
        if not counts:
            out.append((rule.limit.limiter, identity, cost))
    return out


def settle(check: Check, integration: Integration, response: Any) -> Any:
    """Give back the hits that ``response`` does not count (``deduct_when``); returns the
    response (as the framework's response object when a ``deduct_when`` had to read it)."""
    if not any(rule.deduct_when is not None for rule in check.rules):
        return response
    response = integration.as_response(response)
    for limiter, identity, cost in _refunds(check, response):
        try:
            limiter.refund(identity, cost)
        except Exception as error:  # the store failed: the hit stays counted, said once
            LOG.warning("flux: could not give back a hit of %r: %s", limiter, error)
    return response


async def asettle(check: Check, integration: Integration, response: Any) -> Any:
    """:func:`settle` for async callers (awaits a store's ``arefund`` when it has one)."""
    if not any(rule.deduct_when is not None for rule in check.rules):
        return response
    response = integration.as_response(response)
    for limiter, identity, cost in _refunds(check, response):
        try:
            arefund = getattr(limiter, "arefund", None)
            if arefund is not None:
                await arefund(identity, cost)
            else:
                limiter.refund(identity, cost)
        except Exception as error:
            LOG.warning("flux: could not give back a hit of %r: %s", limiter, error)
    return response


# --- a refused request: the application's answer, with flux's headers --------------------------


def _hook(check: Check) -> OnLimited | None:
    """The ``on_limited`` of the first refusing limit that has one, else of any limit."""
    hooks = [rule.on_limited for rule, r in zip(check.rules, check.results) if not r.allowed]
    hooks += [rule.on_limited for rule in check.rules]
    return next((hook for hook in hooks if hook is not None), None)


def _answer(check: Check, integration: Integration, request: Any) -> Any:
    """What the application answers (maybe awaitable), or None for flux's own 429."""
    hook = _hook(check)
    exception = check.exception()
    if hook is not None:
        return hook(request, exception.result)
    return integration.app_limited_response(request, exception)


def limited(check: Check, integration: Integration, request: Any) -> Any:
    """The response to a refused request (sync callers; see the module doc)."""
    response = _answer(check, integration, request)
    if inspect.isawaitable(response):
        response = integration.run_awaitable(response)
    return _finish(check, integration, request, response)


async def alimited(check: Check, integration: Integration, request: Any) -> Any:
    """:func:`limited` for async callers: an async hook or handler is awaited."""
    response = _answer(check, integration, request)
    if inspect.isawaitable(response):
        response = await response
    return _finish(check, integration, request, response)


def _finish(check: Check, integration: Integration, request: Any, response: Any) -> Any:
    if response is None:
        return check.deny(integration)
    return integration.add_headers(request, integration.as_response(response), check.headers())
