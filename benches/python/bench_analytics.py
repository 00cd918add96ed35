"""Request-path cost of ``flux.analytics.record``: enabled vs disabled (target < 2 µs).

Contenders, each a plain ``for`` loop of ``--batch`` calls with the same arguments a decorator
passes (limit name, endpoint, a real RateLimitResult, a latency, an identity):

* ``floor``: a Python function of the same signature that does nothing (the cost of a call);
* ``record, analytics off``: what every decision pays when ``[analytics] enabled = false``;
* ``record, sample_rate 1``: recording on, in-process sink, background flusher running;
* ``record, sample_rate 0.1``: recording on, one decision in ten kept.

Contenders take turns batch by batch in a shuffled order; figures are medians (and p99) of the
per-call time over batches. The background flusher runs as it would in an application, so its
share of the GIL is in the "on" figures. Separately, the flusher's own cost per event (drain,
fold and write to the in-process sink, in the background thread) is timed.

Prints PASS/FAIL for the target; exits 0 whenever it ran.
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import statistics
import time
from typing import Any, Callable

from flux import RateLimiter, analytics
from flux.analytics.recorder import Recorder
from flux.analytics.sinks import MemorySink
from flux.config import AnalyticsConfig, FluxConfig

TARGET_NS = 2000.0


def _floor(
    name: str | None,
    endpoint: str | None,
    result: Any,
    latency_s: float = -1.0,
    identity: str | None = None,
) -> None:
    return None


def _config(enabled: bool, sample_rate: float = 1.0) -> FluxConfig:
    return FluxConfig(analytics=AnalyticsConfig(enabled=enabled, sample_rate=sample_rate))


def _batch(func: Callable[..., None], result: Any, n: int) -> float:
    """Seconds per call over one batch of ``n`` calls."""
    started = time.perf_counter_ns()
    for _ in range(n):
        func("login", "/login", result, 3.2e-6, "ip:203.0.113.7")
    return (time.perf_counter_ns() - started) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--keys", type=int, default=0, help="ignored (run.sh passes it)")
    args = parser.parse_args()

    limiter = RateLimiter(100, 60)
    allowed = limiter.hit("warm")

    def recording(enabled: bool, sample_rate: float = 1.0) -> Callable[[], Callable[..., None]]:
        def setup() -> Callable[..., None]:
            analytics.configure(_config(enabled, sample_rate), serve=False)
            return analytics.record

        return setup

    setups: dict[str, Callable[[], Callable[..., None]]] = {
        "floor (empty function)": lambda: _floor,
        "record, analytics off": recording(False),
        "record, sample_rate 1": recording(True),
        "record, sample_rate 0.1": recording(True, 0.1),
    }
    samples: dict[str, list[float]] = {name: [] for name in setups}
    gc.disable()
    try:
        for _ in range(args.rounds):
            order = list(setups)
            random.shuffle(order)
            for name in order:
                func = setups[name]()
                samples[name].append(_batch(func, allowed, args.batch))
                analytics.flush()
    finally:
        gc.enable()
        analytics.shutdown()

    def p99(values: list[float]) -> float:
        ordered = sorted(values)
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]

    print(f"flux.analytics.record: {args.rounds} rounds x {args.batch} calls, ns per call")
    print(f"  {'contender':<28} {'median':>8} {'p99':>8}")
    medians = {}
    for name, values in samples.items():
        medians[name] = statistics.median(values)
        print(f"  {name:<28} {medians[name]:>8.1f} {p99(values):>8.1f}")

    # The background side: drain + fold + in-process write, per event.
    recorder = Recorder(MemorySink())
    events = 50_000
    for _ in range(events):
        recorder.buffer.append((time.time(), "login", "/login", allowed, 3.2e-6, "ip:1", None))
    started = time.perf_counter_ns()
    recorder.flush()
    flush_ns = (time.perf_counter_ns() - started) / events
    print(f"  flusher (background thread), per event: {flush_ns:.1f} ns")

    off = medians["record, analytics off"]
    call = off - medians["floor (empty function)"]
    for name in ("record, sample_rate 1", "record, sample_rate 0.1"):
        cost = medians[name] - off
        verdict = "PASS" if cost < TARGET_NS else "FAIL"
        print(
            f"{verdict}: {name} costs {cost:.0f} ns more than analytics off per decision "
            f"(target < {TARGET_NS:.0f} ns); off costs {call:.0f} ns more than an empty call"
        )


if __name__ == "__main__":
    main()
