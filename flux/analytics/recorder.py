"""The request-path side of analytics: ``record`` appends to a buffer, a thread flushes it.

``record`` costs one tuple and one ``deque.append`` (plus a random draw when sampling): no
lock, no I/O, no Redis. A daemon thread wakes every ``flush_interval`` seconds, drains the
buffer, folds the events into counts (:func:`~flux.analytics.aggregate.fold`) and writes them
to the sink (in-process, or Redis in one pipeline). The buffer is bounded (``BUFFER_SIZE``
events): if the flusher ever fell that far behind, the oldest events would be dropped rather
than memory growing. A failing sink (Redis down) drops the batch, counts it in ``dropped`` and
logs once per change of state; it never slows the request path.

Forks (gunicorn, multiprocessing) are handled: the child gets an empty buffer and its own
flusher thread; the analytics server stays with the parent.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flux import _prefork
from flux._redis_py import redis_target
from flux._shared import region_path
from flux.analytics import hooks as _hooks_module
from flux.analytics.aggregate import RawEvent, Snapshot, fold
from flux.analytics.hooks import ALLOW, BLOCK, ERROR, Event, dispatch
from flux.analytics.shared_sink import SharedSink
from flux.analytics.sinks import MemorySink, RedisReader, RedisSink, Sink
from flux.config import STORAGE_MEMORY, STORAGE_REDIS, STORAGE_SHARED, FluxConfig, get_config

__all__ = [
    "BUFFER_SIZE",
    "FLUSH_INTERVAL",
    "Recorder",
    "configure",
    "current",
    "flush",
    "is_enabled",
    "record",
    "record_error",
    "set_breaker_probe",
    "shutdown",
]

logger = logging.getLogger("flux.analytics")

BUFFER_SIZE = 100_000
FLUSH_INTERVAL = 0.5
HEARTBEAT_INTERVAL = 5.0


class Recorder:
    """A bounded buffer of raw events, its sampling rate, and the thread that flushes it.

    ``sample_rate`` (0..1) is the share of decisions kept; each kept event weighs
    ``1 / sample_rate``. ``seed`` makes sampling reproducible (tests).
    """

    def __init__(
        self,
        sink: Sink,
        *,
        sample_rate: float = 1.0,
        hash_keys: bool = False,
        flush_interval: float = FLUSH_INTERVAL,
        buffer_size: int = BUFFER_SIZE,
        seed: int | None = None,
    ) -> None:
        """Create the buffer; call :meth:`start` to run the flusher."""
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be within 0..1, got {sample_rate!r}")
        self.sink = sink
        self.sample_rate = float(sample_rate)
        self.weight = 1.0 / sample_rate if sample_rate > 0 else 0.0
        self.hash_keys = hash_keys
        self.flush_interval = flush_interval
        self.buffer: deque[RawEvent] = deque(maxlen=buffer_size)
        self.random: Callable[[], float] = random.Random(seed).random
        self.dropped = 0.0
        self.breaker_probe: Callable[[], str | None] | None = None
        self._failing = False
        self._overflow_logged = False
        self._last_heartbeat = 0.0
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the flusher --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background flusher (a daemon thread)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="flux-analytics-flusher", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval):
            try:
                self.flush()
            except Exception:  # pragma: no cover - flush() already guards the sink
                logger.exception("flux analytics: flush failed")
            _serve_again()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the flusher, then flush what is left (at most ``timeout`` seconds of waiting)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None
        self.flush()

    def after_fork(self) -> None:
        """In a forked child: a fresh buffer, lock and flusher (the parent keeps its own)."""
        sink_after_fork = getattr(self.sink, "after_fork", None)
        if sink_after_fork is not None:
            sink_after_fork()  # a shared sink: the child publishes a record of its own
        self.buffer = deque(maxlen=self.buffer.maxlen)
        self._flush_lock = threading.Lock()
        self.dropped = 0.0
        self._last_heartbeat = 0.0
        if self._thread is not None:
            self.start()

    def drain(self) -> list[RawEvent]:
        """Take every buffered event (safe against concurrent ``record`` calls)."""
        buffer = self.buffer
        if len(buffer) == buffer.maxlen and not self._overflow_logged:
            self._overflow_logged = True
            logger.warning(
                "flux analytics: the event buffer filled up (%d events) between two flushes; "
                "the oldest events were dropped",
                buffer.maxlen,
            )
        popleft = buffer.popleft
        events = []
        try:
            for _ in range(len(buffer)):
                events.append(popleft())
        except IndexError:  # pragma: no cover - another drain raced us
            pass
        return events

    def flush(self) -> int:
        """Write every buffered event to the sink now; returns how many were written."""
        with self._flush_lock:
            events = self.drain()
            now = time.monotonic()
            if events:
                aggregate = fold(events, self.weight, hash_keys=self.hash_keys)
                try:
                    self.sink.write(events, aggregate, self.weight, self.status())
                except Exception as exc:
                    self.dropped += len(events) * self.weight
                    self._state(False, exc)
                    return 0
                self._last_heartbeat = now
                self._state(True, None)
            elif now - self._last_heartbeat >= HEARTBEAT_INTERVAL:
                self._last_heartbeat = now
                try:
                    self.sink.heartbeat(self.status())
                except Exception as exc:
                    self._state(False, exc)
            return len(events)

    def status(self) -> dict[str, Any]:
        """This worker's report: dropped events and circuit breaker state (when known)."""
        info: dict[str, Any] = {"dropped": self.dropped}
        probe = self.breaker_probe
        if probe is not None:
            try:
                state = probe()
            except Exception:
                state = None
            if state:
                info["breaker"] = str(state)
        return info

    def _state(self, ok: bool, exc: BaseException | None) -> None:
        """Log once per change between a working and a failing sink."""
        if ok and self._failing:
            self._failing = False
            logger.warning("flux analytics: the sink works again")
        elif not ok and not self._failing:
            self._failing = True
            logger.warning(
                "flux analytics: cannot write events (%s); dropping them until the sink "
                "recovers (requests are not affected)",
                exc,
            )


# --- process-wide state: what record() reads ---------------------------------------------------

_lock = threading.RLock()
_recorder: Recorder | None = None
_server: Any = None
_configured = False
# The hot path reads these module globals directly.
_append: Callable[[RawEvent], None] | None = None
_rate = 1.0
_random: Callable[[], float] = random.random
_time = time.time
_hooks_on = False
_breaker_probe: Callable[[], str | None] | None = None


def _store_probe(config: FluxConfig) -> Callable[[], str | None] | None:
    """On the Redis store, the probe of its circuit breaker: every worker then reports the
    breaker's real state in its heartbeat (``flux_breaker_state`` on /metrics)."""
    if config.storage != STORAGE_REDIS:
        return None

    def breaker_state() -> str | None:
        from flux._redis import shared_store

        return str(shared_store(config).breaker_state)

    return breaker_state


def _hooks_changed(active: bool) -> None:
    global _hooks_on
    _hooks_on = active
    _publish()


# Who is told whether record() would do anything (the request path's reporter subscribes
# when it loads this module: it imports the recorder, never the other way round).
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


_hooks_module._listeners.append(_hooks_changed)


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
        append = _configure_lazily()
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
        append = _configure_lazily()
        if append is None:
            return
    if _rate < 1.0 and _random() >= _rate:
        return
    append((_time(), name, endpoint, None, latency_s, identity, error))


def _configure_lazily() -> Callable[[RawEvent], None] | None:
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
    _publish()


def _shared_region_path(config: FluxConfig) -> Path | None:
    """The region whose processes this one counts with: ``[shared]``'s, or (no storage
    configured) the region of this pre-fork server's workers, as ``RateLimiter`` chooses it."""
    if config.storage == STORAGE_SHARED:
        return region_path(config)
    if (
        config.storage == STORAGE_MEMORY
        and not config.storage_configured
        and config.flux.max_keys is None
    ):
        region = _prefork.server_region()
        if region is not None:
            return Path(region.path)
    return None


def _sink_for(config: FluxConfig) -> Sink:
    """In-process for the embedded store; Redis (shared by every worker) for the Redis store;
    the region's analytics file (summed over its processes) for the shared store."""
    if config.storage == STORAGE_REDIS:
        redis = config.redis
        client = redis_target(config).connect(timeout=max(redis.timeout_ms / 1000.0, 2.0))
        analytics = config.analytics
        return RedisSink(
            client, analytics.stream, analytics.retention, hash_keys=config.flux.hash_keys
        )
    shared = _shared_region_path(config)
    if shared is not None:
        return SharedSink(shared)
    return MemorySink()


class _LiveSource:
    """What the in-app server reads: flush this process's buffer, then read the sink."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def snapshot(self) -> Snapshot:
        self.recorder.flush()
        snapshot = self.recorder.sink.snapshot()
        if snapshot.source == "memory":
            snapshot.dropped = self.recorder.dropped
            status = self.recorder.status()
            if "breaker" in status:
                snapshot.breakers = {status["breaker"]: 1}
        return snapshot

    def blocked_count(self, identity: str, limit: str | None = None) -> dict[str, float]:
        self.recorder.flush()
        sink = self.recorder.sink
        if isinstance(sink, RedisSink):
            return RedisReader(sink.client, sink.keys.stream).blocked_count(identity, limit)
        if isinstance(sink, (MemorySink, SharedSink)):
            return sink.blocked_count(identity, limit)
        return {}  # pragma: no cover - custom sinks


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
            _publish()
            return False
        recorder = Recorder(
            sink if sink is not None else _sink_for(config),
            sample_rate=analytics.sample_rate,
            hash_keys=config.flux.hash_keys,
            flush_interval=flush_interval,
            seed=seed,
        )
        recorder.breaker_probe = _breaker_probe or _store_probe(config)
        recorder.start()
        _recorder = recorder
        _rate = recorder.sample_rate
        _random = recorder.random
        _append = recorder.buffer.append
        _publish()
        if serve if serve is not None else on:
            from flux.analytics.server import start_background

            _server = start_background(_LiveSource(recorder), analytics.port)
            if _server is None and not isinstance(recorder.sink, MemorySink):
                _serve_later(analytics.port)
        return True


# Summed sinks (shared, Redis) show every worker whichever serves: when another worker had the
# port, this one binds it once that worker is gone (killed, recycled), so /metrics keeps
# answering. The flusher thread tries every SERVE_RETRY seconds.
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
            server = AnalyticsServer(_LiveSource(recorder), port)
        except OSError:
            return  # still taken (the worker serving it lives on): try again later
        server.start()
        _server, _serve_port = server, None
        logger.info("flux analytics: serving on %s", server.url)


def _stop_locked(timeout: float = 2.0) -> None:
    global _recorder, _server, _append, _serve_port
    _append = None  # both callers publish the new state once they are done
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
        _publish()


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
        _publish()


def _at_exit() -> None:
    recorder = _recorder
    if recorder is not None:
        with contextlib.suppress(Exception):  # interpreter shutdown: best effort
            recorder.stop(timeout=1.0)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)
