"""Results that nobody holds are filled in again for the next hit (no allocation per hit).

What must stay true: a result someone holds never changes, and every result handed out
carries the figures of its own decision, whatever was handed out before it.
"""

from __future__ import annotations

import gc
import sys
import threading

import pytest

from flux import FluxConfig, ManualClock, RateLimiter, RateLimitResult

HOUR = 3600.0


def limiter(requests: int, period: float, **kwargs: object) -> RateLimiter:
    kwargs.setdefault("config", FluxConfig())
    return RateLimiter(requests, period, **kwargs)  # type: ignore[arg-type]


def figures(result: RateLimitResult) -> tuple[bool, int, int, float, float, str]:
    return (
        result.allowed,
        result.remaining,
        result.limit,
        result.reset_after,
        result.retry_after,
        result.source,
    )


def test_held_results_never_change() -> None:
    clock = ManualClock(1_000.0)
    lim = limiter(3, 60, clock=clock)
    held = [lim.hit("a") for _ in range(5)]
    assert len({id(r) for r in held}) == 5
    assert [(r.allowed, r.remaining) for r in held] == [
        (True, 2),
        (True, 1),
        (True, 0),
        (False, 0),
        (False, 0),
    ]
    assert held[3].retry_after == pytest.approx(20.0)
    seen = [figures(r) for r in held]
    for _ in range(50):  # more hits, each result dropped at once
        lim.hit("a")
        lim.hit("b")
    assert [figures(r) for r in held] == seen


def test_a_dropped_result_comes_back_with_the_next_decisions_figures() -> None:
    clock = ManualClock(1_000.0)
    small, large = limiter(2, 60, clock=clock), limiter(1000, HOUR, clock=clock)
    # Alternate limiters, keys, allowed and denied: each value read belongs to its own hit.
    assert [small.hit("k").remaining for _ in range(3)] == [1, 0, 0]
    assert small.hit("k").allowed is False
    assert small.hit("k").retry_after == pytest.approx(30.0)
    assert large.hit("k").limit == 1000
    assert large.hit("k").remaining == 998
    assert large.hit("k").retry_after == 0.0
    assert small.hit("other").limit == 2
    assert small.peek("k").remaining == 0
    clock.advance(60.0)
    assert small.hit("k").allowed is True
    assert figures(small.refund("k")) == figures(small.peek("k"))


def test_results_kept_in_containers_and_objects_stay_their_own() -> None:
    lim = limiter(100, HOUR)

    class Request:
        result: RateLimitResult | None = None

    request, box = Request(), {}
    request.result = lim.hit("a")
    box["result"] = lim.hit("a")
    for _ in range(10):
        lim.hit("a")
    assert request.result is not None
    assert (request.result.remaining, box["result"].remaining) == (99, 98)
    assert request.result is not box["result"]


def test_gc_and_repr_see_a_consistent_result() -> None:
    lim = limiter(5, 60)
    lim.hit("a")
    gc.collect()
    every = [o for o in gc.get_objects() if type(o) is RateLimitResult]
    before = [figures(r) for r in every]
    lim.hit("a")  # the kept results are referenced by the list above: a new one is made
    assert [figures(r) for r in every] == before
    del every, before
    assert repr(lim.hit("a")).startswith("RateLimitResult(allowed=True, remaining=2,")


def test_threads_each_read_their_own_decision() -> None:
    # 8 threads x 300 hits on one key of 100 per hour: the remaining counts read from
    # transient results are 99..0 exactly once each, whatever the interleaving.
    lim = limiter(100, HOUR)
    seen: list[tuple[bool, int]] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker() -> None:
        mine = []
        start.wait()
        for _ in range(300):
            result = lim.hit("hot")
            mine.append((result.allowed, result.remaining))
        with lock:
            seen.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        sys.setswitchinterval(interval)
    assert not any(t.is_alive() for t in threads)
    allowed = sorted(remaining for ok, remaining in seen if ok)
    assert allowed == list(range(100))
    assert sum(1 for ok, remaining in seen if not ok and remaining == 0) == 8 * 300 - 100
