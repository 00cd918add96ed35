"""Helpers of the waiting tests (tests/test_acquire.py, tests/redis/test_redis_acquire.py):
acquire from several threads, and check the passes were paced as the quota allows."""

from __future__ import annotations

import threading
import time
from typing import Any


def acquire_in_threads(
    limiter: Any, key: str, threads: int = 4, each: int = 5, timeout: float = 30.0
) -> tuple[list[float], float]:
    """``threads`` threads each ``acquire`` ``key`` ``each`` times, started together; the
    monotonic time of every pass, and of the start."""
    times: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def worker() -> None:
        barrier.wait()
        for _ in range(each):
            limiter.acquire(key)
            with lock:
                times.append(time.monotonic())

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    start = time.monotonic()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=timeout)
    return times, start


def assert_paced(times: list[float], start: float, burst: int, every: float, slack: float) -> None:
    """The k-th pass (sorted) came no earlier than the quota allows: a burst, then one per
    ``every`` seconds (``slack``: the clocks' granularity)."""
    for k, at in enumerate(sorted(times)):
        earliest = start + max(0, k - burst + 1) * every
        assert at >= earliest - slack, (k, at - start)
