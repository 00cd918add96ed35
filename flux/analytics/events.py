"""The per-decision entry points: :func:`record`, :func:`record_error`, and the hooks they fire.

Called once per limit and decision by the integrations (through ``flux.integrations._report``,
docs/architecture.md, "One hit", step 6): cheap (a few hundred ns), never raises, never does
I/O. Each runs the hooks of its kind (:mod:`flux.analytics.hooks`) when any is registered, then
appends one raw event to this process's buffer (sampled), which the recorder's flusher writes
out (:mod:`flux.analytics.recorder`).

This module also tells the request path whether recording is wanted at all
(:func:`on_wanted`): ``_report`` skips timing decisions when neither analytics nor a hook would
see them.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from flux.analytics import hooks as _hooks_module
from flux.analytics import lifecycle
from flux.analytics.aggregate import RawEvent
from flux.analytics.hooks import ALLOW, BLOCK, ERROR, Event, dispatch

__all__ = ["on_wanted", "record", "record_error"]

# The hot path reads these module globals directly (a global read, not an attribute of another
# module): copies of the lifecycle's state, kept current by _sync below, and of the hooks'.
_append: Callable[[RawEvent], None] | None = None
_rate = 1.0
_random: Callable[[], float] = random.random
_configured = False
_time = time.time
_hooks_on = False


def _sync(
    append: Callable[[RawEvent], None] | None,
    rate: float,
    random_: Callable[[], float],
    configured: bool,
) -> None:
    global _append, _rate, _random, _configured
    _append, _rate, _random, _configured = append, rate, random_, configured
    _publish()


def _hooks_changed(active: bool) -> None:
    global _hooks_on
    _hooks_on = active
    _publish()


# Who is told whether record() would do anything (the request path's reporter subscribes
# when it loads this module: it imports this module, never the other way round).
_wanted_listeners: list[Callable[[bool], None]] = []


def on_wanted(listener: Callable[[bool], None]) -> None:
    """Call ``listener(wanted)`` now and after every change of whether :func:`record` would
    do anything (``flux.integrations._report`` skips timing decisions when it would not)."""
    _wanted_listeners.append(listener)
    listener(_wanted())


def _wanted() -> bool:
    return _hooks_on or _append is not None or not _configured


def _publish() -> None:
    """Tell the listeners whether record() would do anything now: called after every change
    of what it reads."""
    wanted = _wanted()
    for listener in _wanted_listeners:
        listener(wanted)


# Subscribed at import, through lists those modules own: the hooks and the lifecycle never
# import this module (the imports stay a DAG).
_hooks_module._listeners.append(_hooks_changed)
lifecycle.on_change(_sync)


def _fire(
    name: str | None,
    endpoint: str | None,
    result: Any,
    latency_s: float,
    identity: str | None,
    error: BaseException | None,
) -> None:
    """Build the hook event and run the hooks of its kind."""
    if error is not None:
        kind, allowed, remaining, quota = ERROR, False, None, None
    elif isinstance(result, bool):
        kind = ALLOW if result else BLOCK
        allowed, remaining, quota = result, None, None
    else:
        allowed = bool(getattr(result, "allowed", True))
        kind = ALLOW if allowed else BLOCK
        remaining = getattr(result, "remaining", None)
        quota = getattr(result, "limit", None)
    if not _hooks_module.registered(kind):
        return
    event = Event(
        limit=name or "default",
        endpoint=endpoint,
        allowed=allowed,
        remaining=remaining,
        quota=quota,
        latency=latency_s,
        time=time.time(),
        identity=identity,
        result=result,
        error=error,
    )
    dispatch(kind, event)


def record(
    name: str | None,
    endpoint: str | None,
    result: Any,
    latency_s: float = -1.0,
    identity: str | None = None,
) -> None:
    """Record one decision. Cheap (a few hundred ns), never raises, never does I/O.

    ``name``: the limit's name; ``endpoint``: a low-cardinality label (route pattern or view
    name, not the raw URL); ``result``: the :class:`~flux.RateLimitResult` (or a bool);
    ``latency_s``: seconds the decision took (negative: unknown); ``identity``: the identity
    the limit counted against (digested before storage when ``hash_keys`` is on).
    """
    if _hooks_on:
        _fire(name, endpoint, result, latency_s, identity, None)
    append = _append
    if append is None:
        if _configured:
            return
        append = lifecycle.configure_lazily()
        if append is None:
            return
    if _rate < 1.0 and _random() >= _rate:
        return
    append((_time(), name, endpoint, result, latency_s, identity, None))


def record_error(
    name: str | None,
    endpoint: str | None,
    error: BaseException,
    latency_s: float = -1.0,
    identity: str | None = None,
) -> None:
    """Record a decision that failed with ``error`` (store unreachable, ...); never raises."""
    if _hooks_on:
        _fire(name, endpoint, None, latency_s, identity, error)
    append = _append
    if append is None:
        if _configured:
            return
        append = lifecycle.configure_lazily()
        if append is None:
            return
    if _rate < 1.0 and _random() >= _rate:
        return
    append((_time(), name, endpoint, None, latency_s, identity, error))
