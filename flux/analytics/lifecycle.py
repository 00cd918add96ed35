"""Analytics for this process: which recorder runs, its server, and forks and exit.

:func:`configure` builds the :class:`~flux.analytics.recorder.Recorder` for a config (its sink
chosen by :mod:`flux.analytics.sink_choice`), starts its flusher and, when asked, the analytics
server; :func:`shutdown` stops them. A worker that found the analytics port taken serves it
once the worker serving it is gone. Forks (gunicorn, multiprocessing) are handled: the child
gets an empty buffer and its own flusher thread; the analytics server stays with the parent.

What the request path needs from here (the buffer's ``append``, the sampling rate and its
random source, whether analytics was configured) is pushed to listeners on every change
(:func:`on_change`): :mod:`flux.analytics.events` keeps a copy in its own module globals, so a
decision reads no attribute of this module (docs/architecture.md, "One hit", step 6).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from flux.analytics.aggregate import RawEvent
from flux.analytics.recorder import FLUSH_INTERVAL, LiveSource, Recorder
from flux.analytics.sink_choice import sink_for, store_probe
from flux.analytics.sinks import MemorySink, Sink
from flux.config import FluxConfig, get_config

__all__ = [
    "SERVE_RETRY",
    "configure",
    "configure_lazily",
    "current",
    "flush",
    "is_enabled",
    "on_change",
    "server_address",
    "set_breaker_probe",
    "shutdown",
]

logger = logging.getLogger("flux.analytics")

Append = Callable[[RawEvent], None]
#: ``listener(append, rate, random, configured)``: what a decision needs, after every change.
StateListener = Callable[[Append | None, float, Callable[[], float], bool], None]

_lock = threading.RLock()
_recorder: Recorder | None = None
_server: Any = None
_configured = False
_append: Append | None = None
_rate = 1.0
_random: Callable[[], float] = random.random
_breaker_probe: Callable[[], str | None] | None = None

# Who is told what a decision needs: flux.analytics.events subscribes when it loads (it imports
# this module, never the other way round, so the imports stay a DAG).
_listeners: list[StateListener] = []


def on_change(listener: StateListener) -> None:
    """Call ``listener(append, rate, random, configured)`` now and after every change."""
    _listeners.append(listener)
    listener(_append, _rate, _random, _configured)


def _changed() -> None:
    """Tell the listeners the current state: called after every change of what they read."""
    for listener in _listeners:
        listener(_append, _rate, _random, _configured)


def configure_lazily() -> Append | None:
    """First record() in a process that never called configure(): read flux.toml."""
    with _lock:
        if not _configured:
            try:
                configure()
            except Exception:
                logger.exception("flux analytics: cannot start; analytics stays off")
                _set_off()
    return _append


def _set_off() -> None:
    global _configured, _append
    _configured = True
    _append = None
    _changed()


def configure(
    config: FluxConfig | None = None,
    *,
    enabled: bool | None = None,
    serve: bool | None = None,
    sink: Sink | None = None,
    flush_interval: float = FLUSH_INTERVAL,
    seed: int | None = None,
) -> bool:
    """(Re)start analytics for this process from ``config`` (default: :func:`flux.get_config`).

    ``enabled`` overrides ``[analytics] enabled``; ``serve`` (default: same as enabled) starts
    the analytics server on ``127.0.0.1:[analytics] port`` in a daemon thread; a port already
    taken (another worker serves it) is logged at debug level and is not an error. ``sink``
    replaces the default sink (Redis when the store is Redis, else in-process). Calling it
    again replaces the previous set-up (pending events are flushed first). Returns whether
    recording is on.
    """
    global _recorder, _server, _configured, _append, _rate, _random
    config = config if config is not None else get_config()
    analytics = config.analytics
    on = analytics.enabled if enabled is None else enabled
    with _lock:
        _stop_locked()
        _configured = True
        if not on:
            _changed()
            return False
        recorder = Recorder(
            sink if sink is not None else sink_for(config),
            sample_rate=analytics.sample_rate,
            hash_keys=config.flux.hash_keys,
            flush_interval=flush_interval,
            seed=seed,
        )
        recorder.breaker_probe = _breaker_probe or store_probe(config)
        recorder.on_tick = _serve_again
        recorder.start()
        _recorder = recorder
        _rate = recorder.sample_rate
        _random = recorder.random
        _append = recorder.buffer.append
        _changed()
        if serve if serve is not None else on:
            from flux.analytics.server import start_background

            _server = start_background(LiveSource(recorder), analytics.port)
            if _server is None and not isinstance(recorder.sink, MemorySink):
                _serve_later(analytics.port)
        return True


# Summed sinks (shared, Redis) show every worker whichever serves: when another worker had the
# port, this one binds it once that worker is gone (killed, recycled), so /metrics keeps
# answering. The flusher thread tries every SERVE_RETRY seconds (Recorder.on_tick).
SERVE_RETRY = 2.0
_serve_port: int | None = None
_serve_next = 0.0


def _serve_later(port: int) -> None:
    global _serve_port, _serve_next
    _serve_port = port
    _serve_next = time.monotonic() + SERVE_RETRY


def _serve_again() -> None:
    """Called by the flusher: bind the analytics port if it was taken and is free now."""
    global _server, _serve_port, _serve_next
    port = _serve_port
    if port is None or _server is not None or time.monotonic() < _serve_next:
        return
    _serve_next = time.monotonic() + SERVE_RETRY
    from flux.analytics.server import AnalyticsServer

    with _lock:
        recorder = _recorder
        if recorder is None or _server is not None or _serve_port is None:
            return
        try:
            server = AnalyticsServer(LiveSource(recorder), port)
        except OSError:
            return  # still taken (the worker serving it lives on): try again later
        server.start()
        _server, _serve_port = server, None
        logger.info("flux analytics: serving on %s", server.url)


def _stop_locked(timeout: float = 2.0) -> None:
    global _recorder, _server, _append, _serve_port
    _append = None  # both callers tell the listeners the new state once they are done
    _serve_port = None
    recorder, _recorder = _recorder, None
    server, _server = _server, None
    if server is not None:
        server.shutdown()
        server.server_close()
    if recorder is not None:
        recorder.stop(timeout)
        recorder.sink.close()


def shutdown(timeout: float = 2.0) -> None:
    """Flush what is buffered, stop the flusher and the server; recording stays off until the
    next :func:`configure`."""
    global _configured
    with _lock:
        _stop_locked(timeout)
        _configured = True
        _changed()


def flush() -> int:
    """Write this process's buffered events now (tests, before exit); returns how many."""
    recorder = _recorder
    return recorder.flush() if recorder is not None else 0


def is_enabled() -> bool:
    """True when decisions are being recorded in this process."""
    return _append is not None


def current() -> Recorder | None:
    """This process's recorder (``None`` when analytics is off)."""
    return _recorder


def server_address() -> tuple[str, int] | None:
    """``(host, port)`` of the analytics server this process runs, or ``None``."""
    server = _server
    return None if server is None else server.server_address[:2]


def set_breaker_probe(probe: Callable[[], str | None] | None) -> None:
    """Tell analytics how to read a circuit breaker's state (``"closed"`` or ``"open"``) for a
    store flux does not build itself; flux's own Redis store is read without it. The state is
    reported by every worker and shown in ``/metrics`` as ``flux_breaker_state``."""
    global _breaker_probe
    _breaker_probe = probe
    recorder = _recorder
    if recorder is not None:
        recorder.breaker_probe = probe


def _after_fork_in_child() -> None:
    """Forked child: fresh lock and buffer, own flusher; the server belongs to the parent."""
    global _lock, _server, _append
    _lock = threading.RLock()
    server, _server = _server, None
    if server is not None:
        server.forget()
        if not isinstance(getattr(_recorder, "sink", None), MemorySink):
            _serve_later(server.server_address[1])  # serve if the parent stops serving
    recorder = _recorder
    if recorder is not None:
        recorder.after_fork()
        _append = recorder.buffer.append
        _changed()


def _at_exit() -> None:
    recorder = _recorder
    if recorder is not None:
        with contextlib.suppress(Exception):  # interpreter shutdown: best effort
            recorder.stop(timeout=1.0)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)
