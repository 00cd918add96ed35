"""Analytics: who is being limited, across every worker.

Every rate limit decision can be recorded as an event: time, limit name, endpoint, allowed,
remaining, limit (capacity), latency and, optionally, the client identity. Events are sampled
(``[analytics] sample_rate``; each kept event weighs ``1 / sample_rate`` so totals stay right),
buffered in the process and flushed by a background thread:

- with the Redis store, to a Redis stream (``XADD <stream> MAXLEN ~ <retention>``) plus
  aggregated counters, per-identity blocked counts and a latency histogram, shared by every
  process (see :mod:`flux.analytics.sinks` for the keys);
- with the shared-memory store (``storage = "shared"``, or a pre-fork server's own region), to
  this process's record in a file beside the region, which readers sum over every process of
  the region (see :mod:`flux.analytics.shared_sink`);
- with the embedded store, to an in-process aggregator.

The analytics server (``/metrics`` for Prometheus, ``/metrics.json``, ``/stats/<limit>`` and an
HTML dashboard at ``/``, on 127.0.0.1:``[analytics] port``) starts in the application when
``[analytics] enabled = true``, or on its own with ``python -m flux serve``. ``python -m flux
monitor`` shows the same numbers live in a terminal.

Recording a decision (for integrations: the decorator and middlewares)
-----------------------------------------------------------------------
::

    from flux import analytics

    started = time.perf_counter()
    result = limiter.hit(key, endpoint, cost)
    analytics.record(name, endpoint, result, time.perf_counter() - started, identity)

    # when the decision itself failed (store unreachable, fail closed):
    analytics.record_error(name, endpoint, exc, time.perf_counter() - started, identity)

:func:`record` ``(name, endpoint, result, latency_s=-1.0, identity=None) -> None``
    ``name``: the limit's name (``None`` counts as ``"default"``); ``endpoint``: a
    low-cardinality label such as the route pattern or the view's qualified name (not the raw
    URL); ``result``: the :class:`~flux.RateLimitResult` (or a bool); ``latency_s``: seconds
    the decision took (negative: unknown); ``identity``: the identity the limit counted
    against (digested before storage when ``[flux] hash_keys`` is on, unless it already is a
    digest). Call it once per limit and decision. It never raises and never does I/O: about
    0.2 µs when recording, well under 0.1 µs when analytics is off.
:func:`record_error` ``(name, endpoint, error, latency_s=-1.0, identity=None) -> None``
    the same for a decision that raised.

The first ``record`` in a process configures analytics from :func:`flux.get_config` (so an
application needs no extra call); :func:`configure` does it explicitly, with another config.

Hooks
-----
:mod:`flux.analytics.hooks`: ``hooks.on_allow(fn)``, ``hooks.on_block(fn)``,
``hooks.on_error(fn)`` (usable as decorators) call ``fn(event)`` with a
:class:`~flux.analytics.hooks.Event` for every decision, whether analytics is enabled or not. An
exception in a hook is logged once and swallowed; it never breaks a request.

Reading
-------
:func:`stats` ``(limit=None, *, identity=None, config=None) -> dict`` (read-only, the
``/metrics.json`` document), :func:`snapshot`, :func:`flush`, :func:`is_enabled`,
:func:`shutdown`, and :func:`set_breaker_probe` for the Redis store to report its circuit
breaker.
"""

from __future__ import annotations

from flux.analytics import hooks
from flux.analytics.aggregate import LATENCY_BUCKETS, Snapshot, snapshot_to_json
from flux.analytics.events import record, record_error
from flux.analytics.hooks import Event
from flux.analytics.lifecycle import (
    configure,
    current,
    flush,
    is_enabled,
    server_address,
    set_breaker_probe,
    shutdown,
)
from flux.analytics.query import snapshot, stats

__all__ = [
    "LATENCY_BUCKETS",
    "Event",
    "Snapshot",
    "configure",
    "current",
    "flush",
    "hooks",
    "is_enabled",
    "record",
    "record_error",
    "server_address",
    "set_breaker_probe",
    "shutdown",
    "snapshot",
    "snapshot_to_json",
    "stats",
]
