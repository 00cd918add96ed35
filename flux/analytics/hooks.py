"""Callbacks run on each decision: ``on_allow``, ``on_block`` and ``on_error``.

>>> from flux.analytics import hooks
>>> @hooks.on_block
... def alert(event):
...     print("blocked", event.identity, "on", event.limit)

Hooks run synchronously, in the thread that made the decision, for **every** decision (they
are not sampled, and they run whether analytics is enabled or not), so keep them fast: hand
slow work to a queue. An exception raised by a hook never reaches the request: the first one of
each hook is logged with its traceback, later ones only at debug level, and the hook keeps
being called. With no hook registered, checking for
hooks costs one global lookup per decision.

Each hook receives one :class:`Event`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["Event", "Hook", "clear", "on_allow", "on_block", "on_error", "registered", "remove"]

logger = logging.getLogger("flux.analytics")


@dataclass(frozen=True)
class Event:
    """One decision (or failed decision), as hooks see it.

    ``limit`` is the limit's name, ``endpoint`` the label the caller gave (route or view),
    ``allowed`` the outcome (``False`` for errors), ``remaining`` and ``quota`` (the capacity)
    come from the result, ``latency`` is the seconds the decision took, ``time`` the epoch
    seconds it was recorded, ``identity`` the client identity the limit counted against (a
    digest when ``hash_keys`` is on), ``result`` the :class:`~flux.RateLimitResult` itself and
    ``error`` the exception for ``on_error`` hooks.
    """

    limit: str
    endpoint: str | None
    allowed: bool
    remaining: int | None
    quota: int | None
    latency: float
    time: float
    identity: str | None = None
    result: Any = None
    error: BaseException | None = None


Hook = Callable[[Event], Any]
H = TypeVar("H", bound=Hook)

ALLOW = "allow"
BLOCK = "block"
ERROR = "error"
KINDS = (ALLOW, BLOCK, ERROR)

_lock = threading.Lock()
# kind -> tuple of hooks; tuples are replaced, never mutated, so readers need no lock.
_hooks: dict[str, tuple[Hook, ...]] = {kind: () for kind in KINDS}
# Hooks that have raised (their first exception was logged as an error).
_failed: set[int] = set()
# Set by flux.analytics.events: called with True when any hook is registered, False when none.
_listeners: list[Callable[[bool], None]] = []


def _add(kind: str, hook: H) -> H:
    if not callable(hook):
        raise TypeError(f"a hook must be callable, got {type(hook).__name__}")
    with _lock:
        if hook not in _hooks[kind]:
            _hooks[kind] = (*_hooks[kind], hook)
        _failed.discard(id(hook))
    _notify()
    return hook


def on_allow(hook: H) -> H:
    """Call ``hook(event)`` after every allowed decision; usable as a decorator."""
    return _add(ALLOW, hook)


def on_block(hook: H) -> H:
    """Call ``hook(event)`` after every blocked decision; usable as a decorator."""
    return _add(BLOCK, hook)


def on_error(hook: H) -> H:
    """Call ``hook(event)`` when a decision failed (``event.error`` holds the exception)."""
    return _add(ERROR, hook)


def remove(hook: Hook) -> None:
    """Unregister ``hook`` wherever it was registered (unknown hooks are ignored)."""
    with _lock:
        for kind in KINDS:
            _hooks[kind] = tuple(h for h in _hooks[kind] if h is not hook)
    _notify()


def clear() -> None:
    """Unregister every hook."""
    with _lock:
        for kind in KINDS:
            _hooks[kind] = ()
        _failed.clear()
    _notify()


def registered(kind: str | None = None) -> tuple[Hook, ...]:
    """The hooks registered for ``kind`` (``"allow"``, ``"block"``, ``"error"``), or all."""
    if kind is None:
        return tuple(h for k in KINDS for h in _hooks[k])
    return _hooks[kind]


def any_registered() -> bool:
    """True when at least one hook is registered."""
    return any(_hooks[kind] for kind in KINDS)


def _notify() -> None:
    active = any_registered()
    for listener in _listeners:
        listener(active)


def dispatch(kind: str, event: Event) -> None:
    """Run the hooks of ``kind`` on ``event``, swallowing (and logging once) their exceptions."""
    for hook in _hooks[kind]:
        try:
            hook(event)
        except Exception:
            with _lock:
                first = id(hook) not in _failed
                _failed.add(id(hook))
            if first:
                logger.exception(
                    "flux analytics: %s hook %r raised (the request was not affected; further "
                    "errors of this hook are logged at debug level)",
                    kind,
                    hook,
                )
            else:
                logger.debug("flux analytics: %s hook %r raised again", kind, hook, exc_info=True)
