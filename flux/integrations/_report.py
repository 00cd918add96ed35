"""Decisions to analytics (docs/architecture.md, "One hit"): one event per limit and decision,
never in the way.

:mod:`flux.analytics` is imported on the first decision, not with flux, and only if present:
recording is a buffer append (no I/O) and must never fail a request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

__all__ = ["report", "report_error", "report_one", "wanted"]

#: Whether decisions need timing and reporting at all. False only once analytics is known to
#: be off in this process and no hook is registered (:mod:`flux.analytics.events` tells it,
#: through ``on_wanted``); True until then, so that the first decision still configures
#: analytics from flux.toml. The per-request path reads it to skip two clock reads and two calls.
wanted = True

_record: Callable[..., None] | None = None
_record_error: Callable[..., None] | None = None
_loaded = False


def _load() -> None:
    global _record, _record_error, _loaded
    try:
        from flux.analytics.events import on_wanted, record, record_error
    except ImportError:  # analytics not shipped in this build: decisions go unrecorded
        record = record_error = None  # type: ignore[assignment]
    else:
        on_wanted(_set_wanted)
    _record, _record_error, _loaded = record, record_error, True


def _set_wanted(value: bool) -> None:
    global wanted
    wanted = value


def report(
    names: Sequence[str],
    identities: Sequence[str],
    results: Sequence[Any],
    latency: float,
    endpoint: str | None,
) -> None:
    """Record one decision per limit (``names[i]`` decided ``results[i]`` for ``identities[i]``)."""
    if not _loaded:
        _load()
    record = _record
    if record is None:
        return
    for name, identity, result in zip(names, identities, results):
        record(name, endpoint, result, latency, identity)


def report_one(name: str, identity: str, result: Any, latency: float, endpoint: str | None) -> None:
    """:func:`report` for one limit, without building lists (the per-request common case)."""
    if not _loaded:
        _load()
    record = _record
    if record is not None:
        record(name, endpoint, result, latency, identity)


def report_error(
    names: Sequence[str],
    identities: Sequence[str],
    error: BaseException,
    latency: float,
    endpoint: str | None,
) -> None:
    """Record a decision that raised (store unreachable with ``fail_silently = false``)."""
    if not _loaded:
        _load()
    record_error = _record_error
    if record_error is None:
        return
    for name, identity in zip(names, identities):
        record_error(name, endpoint, error, latency, identity)
