"""Per-request overhead of ``@flux.rate_limit`` on Flask and FastAPI, beside their usual limiters.

Each framework serves one hello-world route in three variants, each its own app:

* undecorated (the floor);
* ``@flux.rate_limit(requests=10**9, period=1)`` on the embedded store (every request admitted);
* the framework's usual limiter, in memory, with a limit never reached: flask-limiter
  (``Limiter(get_remote_address, app=app, storage_uri="memory://")``,
  ``@limiter.limit("1000000000/second")``) for Flask, slowapi (``Limiter(key_func=
  get_remote_address)``, same limit, ``app.state.limiter`` and its exception handler; its
  endpoint takes the ``request: Request`` slowapi requires) for FastAPI.

No HTTP client and no server: Flask's WSGI app is called directly with a prebuilt environ
(werkzeug's ``EnvironBuilder``, copied per request as a server would build a fresh one), and
FastAPI's ASGI app is awaited directly in one asyncio loop with a prebuilt scope and a trivial
receive/send. So the figures are the framework's own request path, the part a limiter adds to.

Method: every contender runs batches of ``--batch`` requests; the contenders take turns batch
by batch in an order shuffled every round, so that noise falls on all of them alike. Figures
are medians over batches of the time per request. A variant's overhead is paired by round: the
median, over rounds, of its batch minus the undecorated batch of the same round (a fraction of a
second apart), so that the machine's speed drifting between rounds (these VMs vary by a third
from minute to minute) cancels out instead of landing on one side. The cyclic garbage
collector is off while timing. Prints PASS/FAIL for
the targets (flux overhead < 20 µs, and at least 5x below the other limiter's); always exits 0
when it ran. ``--keys`` is accepted and ignored (run.sh passes it).
"""

# No ``from __future__ import annotations``: FastAPI must resolve the nested endpoints'
# ``request: Request`` annotation, whose name is local to _fastapi_apps.
import argparse
import asyncio
import gc
import logging
import random
import statistics
import time
from typing import Any, Callable

import flux

TARGET_OVERHEAD_US = 20.0
TARGET_RATIO = 5.0
FLUX_LIMIT: dict[str, Any] = {"requests": 10**9, "period": 1}
OTHER_LIMIT = "1000000000/second"

BASE, FLUX, OTHER = "undecorated", "flux rate_limit", "other"

#: One batch: runs ``n`` requests, returns nanoseconds per request.
Batch = Callable[[int], float]


def _hello() -> dict[str, str]:
    return {"hello": "world"}


# ---------------------------------------------------------------------------------- Flask


def _flask_apps() -> dict[str, Any]:
    from flask import Flask

    apps: dict[str, Any] = {}

    base = Flask("bench_base")
    base.route("/")(_hello)
    apps[BASE] = base

    with_flux = Flask("bench_flux")
    with_flux.route("/")(flux.rate_limit(**FLUX_LIMIT)(_hello))
    apps[FLUX] = with_flux

    try:
        from flask_limiter import Limiter
        from flask_limiter.util import get_remote_address
    except ImportError:
        print("flask-limiter is not installed: its row is skipped")
    else:
        other = Flask("bench_flask_limiter")
        limiter = Limiter(get_remote_address, app=other, storage_uri="memory://")
        other.route("/")(limiter.limit(OTHER_LIMIT)(_hello))
        apps["flask-limiter"] = other
    return apps


def _wsgi_batch(app: Any) -> tuple[Batch, Callable[[], tuple[str, dict[str, str]]]]:
    from werkzeug.test import EnvironBuilder

    builder = EnvironBuilder(path="/", environ_base={"REMOTE_ADDR": "127.0.0.1"})
    environ = builder.get_environ()
    builder.close()
    seen: list[Any] = []

    def start_response(status: str, headers: list, exc_info: Any = None) -> None:
        seen[:] = [status, headers]

    def one() -> tuple[str, dict[str, str]]:
        body = app(dict(environ), start_response)
        b"".join(body)
        if hasattr(body, "close"):
            body.close()
        return seen[0], dict(seen[1])

    def batch(n: int) -> float:
        env = environ
        sr = start_response
        started = time.perf_counter_ns()
        for _ in range(n):
            body = app(dict(env), sr)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()
        return (time.perf_counter_ns() - started) / n

    return batch, one


# ---------------------------------------------------------------------------------- FastAPI


def _fastapi_apps() -> dict[str, Any]:
    from fastapi import FastAPI, Request

    apps: dict[str, Any] = {}

    base = FastAPI()

    @base.get("/")
    async def hello_base() -> dict[str, str]:
        return {"hello": "world"}

    apps[BASE] = base

    with_flux = FastAPI()

    @with_flux.get("/")
    @flux.rate_limit(**FLUX_LIMIT)
    async def hello_flux() -> dict[str, str]:
        return {"hello": "world"}

    apps[FLUX] = with_flux

    try:
        from slowapi import Limiter, _rate_limit_exceeded_handler
        from slowapi.errors import RateLimitExceeded
        from slowapi.util import get_remote_address
    except ImportError:
        print("slowapi is not installed: its row is skipped")
    else:
        limiter = Limiter(key_func=get_remote_address)
        other = FastAPI()
        other.state.limiter = limiter
        other.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)

        @other.get("/")
        @limiter.limit(OTHER_LIMIT)
        async def hello_slowapi(request: Request) -> dict[str, str]:
            return {"hello": "world"}

        apps["slowapi"] = other
    return apps


_SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.3"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/",
    "raw_path": b"/",
    "root_path": "",
    "query_string": b"",
    "headers": [(b"host", b"testserver"), (b"user-agent", b"bench")],
    "client": ("127.0.0.1", 50000),
    "server": ("testserver", 80),
}
_REQUEST = {"type": "http.request", "body": b"", "more_body": False}


async def _receive() -> dict[str, Any]:
    return _REQUEST


async def _discard(message: dict[str, Any]) -> None:
    return None


def _asgi_batch(
    app: Any, loop: asyncio.AbstractEventLoop
) -> tuple[Batch, Callable[[], tuple[str, dict[str, str]]]]:
    async def run(n: int) -> float:
        scope = _SCOPE
        receive, send = _receive, _discard
        started = time.perf_counter_ns()
        for _ in range(n):
            await app(dict(scope), receive, send)
        return (time.perf_counter_ns() - started) / n

    def batch(n: int) -> float:
        return loop.run_until_complete(run(n))

    async def one_async() -> tuple[str, dict[str, str]]:
        seen: dict[str, Any] = {}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = str(message["status"])
                seen["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}

        await app(dict(_SCOPE), _receive, send)
        return seen["status"], seen["headers"]

    def one() -> tuple[str, dict[str, str]]:
        return loop.run_until_complete(one_async())

    return batch, one


# ---------------------------------------------------------------------------------- main


def _check(label: str, one: Callable[[], tuple[str, dict[str, str]]], flux_row: bool) -> None:
    """One request must succeed (and carry flux's headers when flux limits it)."""
    status, headers = one()
    if not status.startswith("200"):
        raise SystemExit(f"{label}: expected 200, got {status}")
    if flux_row and not any(h.lower().startswith("x-ratelimit") for h in headers):
        raise SystemExit(f"{label}: no X-RateLimit header, is flux really limiting? {headers}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=200, help="requests per batch")
    parser.add_argument("--seconds", type=float, default=45.0, help="time budget for timing")
    parser.add_argument("--max-rounds", type=int, default=400)
    parser.add_argument("--keys", type=int, default=0, help="ignored (run.sh passes it)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # flask-limiter/slowapi chatter

    loop = asyncio.new_event_loop()
    contenders: dict[tuple[str, str], Batch] = {}
    frameworks: list[str] = []
    for framework, build, wrap in (
        ("Flask", _flask_apps, _wsgi_batch),
        ("FastAPI", _fastapi_apps, lambda app: _asgi_batch(app, loop)),
    ):
        try:
            apps = build()
        except ImportError as exc:
            print(f"{framework} is not importable ({exc}): skipped")
            continue
        frameworks.append(framework)
        for variant, app in apps.items():
            batch, one = wrap(app)
            _check(f"{framework} {variant}", one, variant == FLUX)
            batch(max(args.batch, 500))  # warm-up
            contenders[framework, variant] = batch
    if not contenders:
        raise SystemExit("neither Flask nor FastAPI is importable")

    samples: dict[tuple[str, str], list[float]] = {name: [] for name in contenders}
    rounds = 0
    deadline = time.monotonic() + args.seconds
    gc.collect()
    gc.disable()
    try:
        while rounds < args.max_rounds and (rounds < 10 or time.monotonic() < deadline):
            order = list(contenders)
            random.shuffle(order)
            for name in order:
                samples[name].append(contenders[name](args.batch))
            rounds += 1
    finally:
        gc.enable()
        loop.close()

    print(
        f"Decorator overhead per request, embedded store: {rounds} rounds x {args.batch} "
        f"requests, interleaved; µs per request (median over batches; overhead paired by round)"
    )
    print(f"  {'framework':<8} {'variant':<16} {'median':>9} {'overhead':>9} {'vs flux':>8}")
    verdicts: list[str] = []
    for framework in frameworks:
        variants = [v for (f, v) in samples if f == framework]
        med = {v: statistics.median(samples[framework, v]) / 1000 for v in variants}
        base_runs = samples[framework, BASE]
        over = {
            v: statistics.median(x - b for x, b in zip(samples[framework, v], base_runs)) / 1000
            for v in variants
        }
        flux_over = over[FLUX]
        for variant in variants:
            over_txt = "" if variant == BASE else f"{over[variant]:+9.2f}"
            ratio = ""
            if variant not in (BASE, FLUX):
                ratio = f"{over[variant] / flux_over:7.1f}x" if flux_over > 0 else "    inf"
            print(f"  {framework:<8} {variant:<16} {med[variant]:9.2f} {over_txt:>9} {ratio:>8}")
        ok = flux_over < TARGET_OVERHEAD_US
        verdicts.append(
            f"{'PASS' if ok else 'FAIL'}: {framework}: flux overhead {flux_over:.2f} µs per "
            f"request (target < {TARGET_OVERHEAD_US:.0f} µs)"
        )
        others = [v for v in variants if v not in (BASE, FLUX)]
        if not others:
            verdicts.append(f"SKIP: {framework}: no other limiter installed to compare with")
        for variant in others:
            other_over = over[variant]
            ok = flux_over <= 0 or other_over >= TARGET_RATIO * flux_over
            ratio_txt = f"{other_over / flux_over:.1f}x" if flux_over > 0 else "inf"
            verdicts.append(
                f"{'PASS' if ok else 'FAIL'}: {framework}: {variant} overhead "
                f"{other_over:.2f} µs = {ratio_txt} flux's (target >= {TARGET_RATIO:.0f}x)"
            )
    for line in verdicts:
        print(line)


if __name__ == "__main__":
    main()
