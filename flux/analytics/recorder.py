"""The :class:`Recorder`: one process's event buffer, its sampling and the thread that flushes it.

``record`` (:mod:`flux.analytics.events`) costs one tuple and one ``deque.append`` (plus a
random draw when sampling): no lock, no I/O, no Redis. A daemon thread wakes every
``flush_interval`` seconds, drains the buffer, folds the events into counts
(:func:`~flux.analytics.aggregate.fold`) and writes them to the sink (in-process, or Redis in
one pipeline). The buffer is bounded (``BUFFER_SIZE`` events): if the flusher ever fell that
far behind, the oldest events would be dropped rather than memory growing. A failing sink
(Redis down) drops the batch, counts it in ``dropped`` and logs once per change of state; it
never slows the request path.

This module knows nothing of the process-wide set-up: which recorder runs, its server, forks
and exit are :mod:`flux.analytics.lifecycle`'s; which sink it writes to is
:mod:`flux.analytics.sink_choice`'s (docs/architecture.md, "Where each feature lives").
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from flux.analytics.aggregate import RawEvent, Snapshot, fold
from flux.analytics.shared_sink import SharedSink
from flux.analytics.sinks import MemorySink, RedisReader, RedisSink, Sink

__all__ = ["BUFFER_SIZE", "FLUSH_INTERVAL", "HEARTBEAT_INTERVAL", "LiveSource", "Recorder"]

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
        # Called by the flusher after each flush. The process-wide set-up (lifecycle) uses it
        # to retry serving a taken analytics port; a callback, so this class imports nothing
        # that imports it back.
        self.on_tick: Callable[[], None] | None = None
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
            on_tick = self.on_tick
            if on_tick is not None:
                on_tick()

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


class LiveSource:
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
