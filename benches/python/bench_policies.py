"""What the per-request policies cost a request: a limit chosen per request against a fixed one.

FastAPI and Flask hello-world routes (the harness of bench_decorators.py: no server, no client,
apps called directly), each its own app:

* undecorated (the floor);
* ``rate_limit(requests=10**9, period=1)``: a fixed limit, the path every view without
  policies takes;
* ``rate_limit("1000000000/second")``: the same limit as a rate string (same path: a check);
* ``rate_limit(limit=lambda request: "1000000000/second")``: the limit chosen per request;
* ``rate_limit(..., exempt_when=lambda request: False)``: a policy that is asked and says no.

Target: a limit chosen per request costs at most 2 µs more than a fixed one (paired by round,
as in bench_decorators.py). Prints PASS/FAIL; always exits 0 when it ran.
"""

import argparse
import asyncio
import gc
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).parent))

from bench_decorators import _asgi_batch, _check, _wsgi_batch

import flux

TARGET_CHOSEN_US = 2.0
RATE = "1000000000/second"
BASE, FIXED, STRING, CHOSEN, EXEMPT = (
    "undecorated",
    "fixed limit",
    "rate string",
    "chosen per request",
    "exempt_when (no)",
)


def _decorations() -> dict[str, Callable[[Any], Any]]:
    return {
        BASE: lambda f: f,
        FIXED: flux.rate_limit(requests=10**9, period=1),
        STRING: flux.rate_limit(RATE),
        CHOSEN: flux.rate_limit(limit=lambda request: RATE),
        EXEMPT: flux.rate_limit(requests=10**9, period=1, exempt_when=lambda request: False),
    }


def _flask_apps() -> dict[str, Any]:
    from flask import Flask

    apps = {}
    for variant, decorate in _decorations().items():
        app = Flask(f"policies_{len(apps)}")

        def hello() -> dict[str, str]:
            return {"hello": "world"}

        app.route("/")(decorate(hello))
        apps[variant] = app
    return apps


def _fastapi_apps() -> dict[str, Any]:
    from fastapi import FastAPI

    apps = {}
    for variant, decorate in _decorations().items():
        app = FastAPI()

        async def hello() -> dict[str, str]:
            return {"hello": "world"}

        app.get("/")(decorate(hello))
        apps[variant] = app
    return apps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--keys", type=int, default=0, help="ignored (run.sh passes it)")
    args = parser.parse_args()
    loop = asyncio.new_event_loop()
    contenders: dict[tuple[str, str], Any] = {}
    for framework, build, wrap in (
        ("Flask", _flask_apps, _wsgi_batch),
        ("FastAPI", _fastapi_apps, lambda app: _asgi_batch(app, loop)),
    ):
        for variant, app in build().items():
            batch, one = wrap(app)
            _check(f"{framework} {variant}", one, variant != BASE)
            batch(500)
            contenders[framework, variant] = batch
    samples: dict[tuple[str, str], list[float]] = {name: [] for name in contenders}
    rounds, deadline = 0, time.monotonic() + args.seconds
    gc.collect()
    gc.disable()
    try:
        while rounds < 10 or time.monotonic() < deadline:
            order = list(contenders)
            random.shuffle(order)
            for name in order:
                samples[name].append(contenders[name](args.batch))
            rounds += 1
    finally:
        gc.enable()
        loop.close()
    print(f"Per-request policies: {rounds} rounds x {args.batch} requests, µs per request")
    print(f"  {'framework':<8} {'variant':<20} {'overhead':>9} {'vs fixed':>9}")
    verdicts = []
    for framework in ("Flask", "FastAPI"):
        base = samples[framework, BASE]

        def over(variant: str, framework: str = framework, base: list[float] = base) -> float:
            runs = samples[framework, variant]
            return statistics.median(x - b for x, b in zip(runs, base)) / 1000

        fixed = over(FIXED)
        for variant in (FIXED, STRING, CHOSEN, EXEMPT):
            extra = "" if variant == FIXED else f"{over(variant) - fixed:+9.2f}"
            print(f"  {framework:<8} {variant:<20} {over(variant):+9.2f} {extra:>9}")
        more = over(CHOSEN) - fixed
        verdicts.append(
            f"{'PASS' if more <= TARGET_CHOSEN_US else 'FAIL'}: {framework}: a limit chosen per "
            f"request costs {more:+.2f} µs more than a fixed one (target <= {TARGET_CHOSEN_US} µs)"
        )
    for line in verdicts:
        print(line)


if __name__ == "__main__":
    main()
