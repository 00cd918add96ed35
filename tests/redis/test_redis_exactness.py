"""Exactness on Redis: one limit shared by processes and by threads admits exactly its quota.

100 per hour on one key, 2000 hits from 4 processes (or 4000 from 8 threads): exactly 100 pass
under every algorithm. The bucket algorithms refill one hit per 36 s, far longer than a run
takes; the window algorithms count per window, so for them the test reads Redis's clock before
and after and, in the rare run that straddles a window boundary (a run takes ~1 s of the
hour), accepts up to one more quota instead of failing.
"""

from __future__ import annotations

import threading

from fluxredis import Worker, redis_config
from redis_server import RedisServer

from flux import RateLimiter, _flux
from flux._flux import ALGORITHMS

REQUESTS = 100
HOUR = 3600.0
WINDOWED = {"fixed_window", "sliding_window"}


def server_hour(redis: RedisServer) -> int:
    """Which hour (window of the period) Redis's clock is in now."""
    seconds, _ = redis.command("TIME")
    return int(seconds) // int(HOUR)


def assert_exact(allowed: dict[str, int], straddled: bool) -> None:
    for policy, count in allowed.items():
        if straddled and policy in WINDOWED:
            assert REQUESTS <= count <= 2 * REQUESTS, (policy, count)
        else:
            assert count == REQUESTS, (policy, count)


def test_four_processes_admit_exactly_the_quota(redis: RedisServer) -> None:
    workers = [Worker(redis.url) for _ in range(4)]
    try:
        start = server_hour(redis)
        request = {
            "op": "burst",
            "policies": list(ALGORITHMS),
            "requests": REQUESTS,
            "period": HOUR,
            "hits": 500,
            "key": "shared",
        }
        for worker in workers:  # all started before any answer is read: they overlap
            worker.send(request)
        replies = [worker.receive()["allowed"] for worker in workers]
        straddled = server_hour(redis) != start
    finally:
        for worker in workers:
            worker.stop()
    total = {policy: sum(reply[policy] for reply in replies) for policy in ALGORITHMS}
    assert_exact(total, straddled)


def test_eight_threads_admit_exactly_the_quota(redis: RedisServer) -> None:
    config = redis_config(redis.url, pool_size=8)
    limiters = {p: RateLimiter(REQUESTS, HOUR, policy=p, config=config) for p in ALGORITHMS}
    counts = {p: [0] * 8 for p in ALGORITHMS}
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        barrier.wait()
        for _ in range(500):
            for policy, lim in limiters.items():
                counts[policy][n] += lim.hit("shared").allowed

    start = server_hour(redis)
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    straddled = server_hour(redis) != start
    assert_exact({p: sum(c) for p, c in counts.items()}, straddled)


def test_threads_beyond_the_direct_callers_are_pipelined_and_exact(redis: RedisServer) -> None:
    store = _flux.RedisStore(redis.url, pool_size=4, direct_callers=1)
    limiters = [_flux.Limiter(REQUESTS, HOUR, policy=p, store=store) for p in ALGORITHMS]
    counts = [[0] * len(ALGORITHMS) for _ in range(8)]
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        barrier.wait()
        for _ in range(300):
            for i, lim in enumerate(limiters):
                counts[n][i] += lim.hit("shared").allowed

    start = server_hour(redis)
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    straddled = server_hour(redis) != start
    totals = {p: sum(c[i] for c in counts) for i, p in enumerate(ALGORITHMS)}
    assert_exact(totals, straddled)
    stats = store.stats()
    # Some hits shared pipelines: fewer round trips than hits sent through the I/O threads.
    assert int(stats["async_hits"]) > 0
    assert int(stats["async_batches"]) <= int(stats["async_hits"])
