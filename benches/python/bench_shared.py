"""The shared-memory store from Python, against the per-process store, in one run.

Rows (issue 13's targets; ratios are of figures measured in this same run):

(a) one Python ``hit`` on the shared store vs on the per-process store, hot key and 1000 keys
    (target: shared costs at most 1.2x);
(b) 2 processes hammering one hot key of one region: together at least as many hits/s as one
    process alone (lock-free CAS must not collapse under contention);
(c) a loop of ``hit(key).allowed`` over 1000 keys, per-process and shared, vs rust-py-rate-limit
    ``allow(key)`` (target: at least 1.25x its calls/s); SKIP when it is not installed.

Method as bench_memory.py: contenders take turns batch by batch in a shuffled order, so the
noise of a busy 2-core machine falls on all alike; the median per-call time over batches is
reported. Never fails on a number (prints PASS/FAIL). Bounded: a few seconds per row.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import flux
from flux.config import FluxConfig, FluxSettings, SharedConfig

REQUESTS, PERIOD = 100, 60
HOT = "user:42"


def shared_config(path: Path) -> FluxConfig:
    return FluxConfig(
        flux=FluxSettings(storage="shared"), shared=SharedConfig(path=str(path), max_keys=65536)
    )


def memory_limiter() -> flux.RateLimiter:
    return flux.RateLimiter(REQUESTS, PERIOD, config=FluxConfig(storage="memory"))


def interleave(
    contenders: dict[str, Callable[[], None]], calls: int, rounds: int
) -> dict[str, float]:
    """Median ns per call of each contender's batch (``calls`` calls), turns shuffled."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    gc.disable()
    try:
        for _ in range(rounds):
            random.shuffle(names)
            for name in names:
                start = time.perf_counter_ns()
                contenders[name]()
                times[name].append((time.perf_counter_ns() - start) / calls)
    finally:
        gc.enable()
    return {name: statistics.median(t) for name, t in times.items()}


def loop(hit: Callable[[str], Any], keys: list[str]) -> Callable[[], None]:
    def run() -> None:
        for k in keys:
            _ = hit(k).allowed

    return run


def report(label: str, ok: bool | None, text: str) -> None:
    verdict = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
    print(f"  [{verdict}] {label}: {text}")


def hammer(path: str, seconds: float, start: Any, out: Any) -> None:
    limiter = flux.RateLimiter(REQUESTS, PERIOD, config=shared_config(Path(path)))
    hit = limiter.hit
    start.wait()
    count = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for _ in range(1000):
            hit(HOT)
        count += 1000
    out.put(count)


def processes_rate(path: Path, processes: int, seconds: float) -> float:
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    workers = [
        ctx.Process(target=hammer, args=(str(path), seconds, start, out)) for _ in range(processes)
    ]
    for w in workers:
        w.start()
    time.sleep(1.0)  # let every process import flux and open the region before the clock starts
    start.set()
    total = sum(out.get(timeout=seconds + 30) for _ in workers)
    for w in workers:
        w.join(timeout=10)
        if w.is_alive():
            w.kill()
    return total / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1000, help="ignored beyond 1000 (row c)")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=3.0, help="row (b), per measurement")
    args = parser.parse_args()
    keys = [f"key:{i}" for i in range(1000)]
    hot = [HOT] * 1000
    print("== shared-memory store vs per-process store (Python) ==")
    with tempfile.TemporaryDirectory() as tmp:
        region = Path(tmp) / "region"
        shared = flux.RateLimiter(REQUESTS, PERIOD, config=shared_config(region))
        memory = memory_limiter()
        assert shared.storage == "shared" and memory.storage == "memory"

        # (a) + (c): one interleaved run, so the ratios compare figures of the same moments.
        contenders = {
            "memory hot": loop(memory.hit, hot),
            "shared hot": loop(shared.hit, hot),
            "memory 1000 keys": loop(memory.hit, keys),
            "shared 1000 keys": loop(shared.hit, keys),
        }
        try:
            import rust_py_rate_limit as rpl

            other = rpl.RateLimiter(limit=REQUESTS, window_seconds=PERIOD)

            def rpl_loop(allow: Callable[[str], bool] = other.allow) -> None:
                for k in keys:
                    allow(k)

            contenders["rust-py-rate-limit 1000 keys"] = rpl_loop
            rpl_version = getattr(rpl, "__version__", "?")
        except ImportError:
            rpl_version = None
        ns = interleave(contenders, 1000, args.rounds)
        for name, value in ns.items():
            print(f"  {name:<30} {value:8.1f} ns/call  {1e9 / value / 1e6:6.2f} M calls/s")
        for scenario in ("hot", "1000 keys"):
            ratio = ns[f"shared {scenario}"] / ns[f"memory {scenario}"]
            report(
                f"(a) {scenario}",
                ratio <= 1.2,
                f"shared hit costs {ratio:.2f}x per-process (target <= 1.2x)",
            )
        if rpl_version is None:
            report("(c)", None, "rust-py-rate-limit is not installed in this venv")
        else:
            theirs = ns["rust-py-rate-limit 1000 keys"]
            for store in ("memory", "shared"):
                speed = theirs / ns[f"{store} 1000 keys"]
                report(
                    f"(c) {store}",
                    speed >= 1.25,
                    f"hit(key).allowed {speed:.2f}x the calls/s of rust-py-rate-limit "
                    f"{rpl_version} allow(key) (target >= 1.25x)",
                )

        # (b): one process alone, then two together, on one hot key of one region.
        contended = Path(tmp) / "contended"
        one = processes_rate(contended, 1, args.seconds)
        two = processes_rate(contended, 2, args.seconds)
        print(
            f"  1 process  {one / 1e6:6.2f} M hits/s; "
            f"2 processes together {two / 1e6:6.2f} M hits/s"
        )
        report(
            "(b)",
            two >= one,
            f"2 processes on one hot key: {two / one:.2f}x one alone (target >= 1x)",
        )


if __name__ == "__main__":
    main()
