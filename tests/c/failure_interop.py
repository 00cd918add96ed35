"""The Python half of the C/Python failure check (run by tests/c/run.sh).

Against a stopped Redis, makes the same calls as failure_interop.c (a hit of cost 2, a peek, a
refund and a two-limit hit, on a limit of 5 per hour, on a store failing open and on one
failing closed) and prints one line per call, in the C program's format: both must print the
same lines. Usage: failure_interop.py URL
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from flux import ConnectionError as FluxConnectionError
from flux._flux import Limiter, RateLimitResult, RedisStore, hit_many

HOUR = 3600.0


def line(policy: str, call: str, result: RateLimitResult) -> str:
    return (
        f"{policy} {call}: allowed={int(result.allowed)} limit={result.limit} "
        f"remaining={result.remaining} reset_after_ns={round(result.reset_after * 1e9)} "
        f"retry_after_ns={round(result.retry_after * 1e9)} source={result.source}"
    )


def report(policy: str, call: str, make: Callable[[], list[RateLimitResult]]) -> None:
    names = [call] if call != "hit_many" else ["hit_many[0]", "hit_many[1]"]
    try:
        results = make()
    except FluxConnectionError:
        for name in names:
            print(f"{policy} {name}: error=store")
        return
    for name, result in zip(names, results):
        print(line(policy, name, result))


def calls(url: str, policy: str, fail_silently: bool) -> None:
    store = RedisStore(url, timeout_ms=100, fail_silently=fail_silently)
    first = Limiter(5, HOUR, prefix="failure-a:", store=store)
    second = Limiter(5, HOUR, prefix="failure-b:", store=store)
    report(policy, "hit", lambda: [first.hit("k", cost=2)])
    report(policy, "peek", lambda: [first.peek("k")])
    report(policy, "refund", lambda: [first.refund("k", 1)])
    report(policy, "hit_many", lambda: hit_many([(first, "k", 1), (second, "k", 3)]))


def main(url: str) -> None:
    calls(url, "open", True)
    calls(url, "closed", False)


if __name__ == "__main__":
    main(*sys.argv[1:])
