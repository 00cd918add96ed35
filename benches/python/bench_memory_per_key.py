"""Memory per idle key of flux's embedded store, one fresh process per measurement.

Each child process builds its N key strings (default 1 000 000) and its limiter first, reads
its memory, hits every key once, and reads again; the key list stays alive through both
readings, so the strings' own memory is not counted. flux keeps a 64-bit seeded hash of each
key instead of the string, so in flux the key itself costs nothing and all of the difference
is the store's. Two readings:

* RSS, from /proc/self/statm (what the OS charges the process; includes memory the allocator
  holds but no longer uses, such as the tables left behind when a hash table grows);
* bytes in use by malloc (glibc ``mallinfo2``: ``uordblks + hblkhd``), which is where the Rust
  side allocates from; Python's own small objects come from its arenas and are not in it.

The target (≤ 64 bytes per idle key beyond the key itself) is judged on RSS for the
default policy, gcra; the other policies, and rust-py-rate-limit (which stores its own copy of
each key string), are printed for information. Always exits 0 when it ran.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import subprocess
import sys
import time
from typing import Any, Callable

TARGET_BYTES = 64.0
# Quotas: long periods, so that no key is back to full capacity (and sweepable) while measured.
REQUESTS, PERIOD = 100, 3600
SMALL_LOG_QUOTA = 5  # sliding_log keeps one entry per logged hit: a small quota, as in real use

RPL = "rust-py-rate-limit"
SUBJECTS = [
    ("flux", "gcra"),
    ("flux", "token_bucket"),
    ("flux", "leaky_bucket"),
    ("flux", "fixed_window"),
    ("flux", "sliding_window"),
    ("flux", "sliding_log"),
    (RPL, "fixed"),
]


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def malloc_in_use() -> int | None:
    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = MallInfo2
    info = mallinfo2()
    return int(info.uordblks + info.hblkhd)


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(library: str, policy: str, n: int) -> dict[str, Any]:
    keys = [f"user:{i:07d}" for i in range(n)]
    hit: Callable[[str], Any]
    if library == "flux":
        import flux

        requests = SMALL_LOG_QUOTA if policy == "sliding_log" else REQUESTS
        flux_limiter = flux.RateLimiter(requests, PERIOD, policy=policy)
        hit, reset, held = flux_limiter.hit, flux_limiter.reset, flux_limiter.__len__
        quota = f"{requests} per {PERIOD} s"
    else:
        import rust_py_rate_limit

        rpl_limiter = rust_py_rate_limit.RateLimiter(limit=REQUESTS, window_seconds=PERIOD)
        hit, reset = rpl_limiter.allow, rpl_limiter.reset
        held = lambda: rpl_limiter.stats()["active_keys"]  # noqa: E731
        quota = f"{REQUESTS} per {PERIOD} s"
    # Whatever the first hit sets up lazily is not per-key memory.
    hit("warm-up")
    reset("warm-up")
    gc.collect()
    rss_before, heap_before = rss(), malloc_in_use()
    started = time.perf_counter_ns()
    for k in keys:
        hit(k)
    elapsed = time.perf_counter_ns() - started
    gc.collect()
    rss_after, heap_after = rss(), malloc_in_use()
    return {
        "library": library,
        "policy": policy,
        "quota": quota,
        "keys": len(keys),  # keeps the key list alive up to here
        "held": held(),
        "rss": (rss_after - rss_before) / n,
        "heap": None if heap_before is None else (heap_after - heap_before) / n,
        "insert_ns": elapsed / n,
    }


def measure(library: str, policy: str, n: int) -> dict[str, Any]:
    command = [sys.executable, os.path.abspath(__file__), "--child", library, policy]
    done = subprocess.run([*command, "--keys", str(n)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"library": library, "policy": policy, "error": done.stderr.strip()[-600:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--child", nargs=2, metavar=("LIBRARY", "POLICY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.keys)))
        return 0

    n = args.keys
    print(f"== memory per idle key: {n:,} distinct keys, each hit once, one process each ==")
    print(
        "  key strings built before the first reading and alive through the second: not counted;"
        "\n  flux stores a 64-bit seeded hash per key, not the string, so the key itself costs 0"
    )
    started = time.monotonic()
    rows = [measure(library, policy, n) for library, policy in SUBJECTS]
    header = f"  {'store':<20}{'policy':<16}{'quota':<16}{'held':>11}{'RSS B/key':>11}"
    print(header + f"{'malloc B/key':>14}{'insert ns':>11}")
    gcra: dict[str, Any] | None = None
    for row in rows:
        if "error" in row:
            print(f"  {row['library']:<20}{row['policy']:<16}FAILED: {row['error']}")
            continue
        heap = "n/a" if row["heap"] is None else f"{row['heap']:.1f}"
        print(
            f"  {row['library']:<20}{row['policy']:<16}{row['quota']:<16}{row['held']:>11,}"
            f"{row['rss']:>11.1f}{heap:>14}{row['insert_ns']:>11.0f}"
        )
        if (row["library"], row["policy"]) == ("flux", "gcra"):
            gcra = row
    print("  (rust-py-rate-limit keeps its own copy of each key string: its figure includes it)")
    print()
    print("-- target (the README's targets) --")
    if gcra is None:
        print("  [FAIL] flux gcra: the measurement itself failed (see above)")
    else:
        passed = gcra["rss"] <= TARGET_BYTES and gcra["held"] == n
        held_note = "" if gcra["held"] == n else f"; but it holds only {gcra['held']:,} keys"
        print(
            f"  [{'PASS' if passed else 'FAIL'}] flux gcra: {gcra['rss']:.1f} bytes of RSS per "
            f"idle key beyond the key itself (target ≤ {TARGET_BYTES:.0f}){held_note}"
        )
    print(f"  {time.monotonic() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
