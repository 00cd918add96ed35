"""bindings/bench.sh's Python row: the mean time of one ``RateLimiter.hit`` on a hot key of the
embedded store (1e9 per second: never denied), over N hits after a warm-up, the loop the Go and
Node benchmarks run. Prints the ns per hit. Usage: bench_python.py N
"""

from __future__ import annotations

import gc
import sys
import time

from flux import RateLimiter


def main(n: int) -> None:
    limiter = RateLimiter(1_000_000_000, 1)
    hit = limiter.hit
    for _ in range(n // 10):
        hit("user:42")
    gc.disable()
    start = time.perf_counter_ns()
    for _ in range(n):
        hit("user:42")
    elapsed = time.perf_counter_ns() - start
    print(f"{elapsed / n:.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
