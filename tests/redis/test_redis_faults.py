"""Redis failing: killed mid-run and restarted, frozen, refusing the password.

Fail open lets hits through flagged ``fail_open``; fail closed raises ``flux.ConnectionError``
with the store's message. The circuit breaker opens after three failures (then hits cost no
wait at all), probes, and closes by itself once Redis is back. No hit waits much past
``timeout_ms``; the bounds below are generous (hang detection, not benchmarks). The log says
each state change once, with no traceback.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import pytest
from fluxredis import redis_config
from redis_server import RedisServer

from flux import ConnectionError, FluxError, RateLimiter, _flux, load_config
from flux.config import LimitConfig

TIMEOUT_MS = 200
# Far above timeout_ms (hang detection only): a loaded CI machine must not make this flaky.
HANG = 3.0
LOGGER = "flux.redis"


def store(server: RedisServer, **options: object) -> _flux.RedisStore:
    options.setdefault("timeout_ms", TIMEOUT_MS)
    options.setdefault("breaker_cooldown_ms", 100)
    return _flux.RedisStore(server.url, **options)  # type: ignore[arg-type]


def timed(call: Callable[[], object]) -> tuple[object, float]:
    start = time.monotonic()
    try:
        outcome: object = call()
    except FluxError as exc:
        outcome = exc
    return outcome, time.monotonic() - start


def wait_closed(redis_store: _flux.RedisStore, lim: _flux.Limiter) -> None:
    """Hits until a probe finds Redis back and closes the breaker (within 5 s)."""
    deadline = time.monotonic() + 5
    while redis_store.breaker_state == "open":
        assert time.monotonic() < deadline, "the breaker did not close after Redis came back"
        lim.hit("probe")
        time.sleep(0.02)


def messages(caplog: pytest.LogCaptureFixture, needle: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and needle in r.getMessage()]


def test_killed_and_restarted_fail_open(
    make_server: Callable[..., RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    server = make_server()
    redis_store = store(server)
    lim = _flux.Limiter(5, 3600, store=redis_store)
    assert [lim.hit("k").allowed for _ in range(2)] == [True, True]
    server.kill()
    outcomes = [timed(lambda: lim.hit("k")) for _ in range(6)]
    for result, seconds in outcomes:
        assert isinstance(result, _flux.RateLimitResult)
        assert result.allowed and result.fail_open and result.source == "fail_open"
        assert seconds < HANG
    assert redis_store.breaker_state == "open"
    # Open: no waiting on Redis at all (the bound is loose; the bench measures it).
    assert all(seconds < 0.1 for _, seconds in outcomes[3:])
    server.start()  # empty: the count starts again
    wait_closed(redis_store, lim)
    assert lim.hit("k").source == "redis"
    assert len(messages(caplog, "circuit breaker open")) == 1
    assert len(messages(caplog, "reachable again")) == 1
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    # One warning per state change: the breaker's line when it opened, nothing per failure.
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert all(r.exc_info is None for r in caplog.records)
    stats = redis_store.stats()
    assert int(stats["fail_open"]) >= 6 and stats["breaker"] == "closed"


def test_killed_and_restarted_fail_closed(make_server: Callable[..., RedisServer]) -> None:
    server = make_server()
    redis_store = store(server, fail_silently=False)
    lim = _flux.Limiter(5, 3600, store=redis_store)
    lim.hit("k")
    server.kill()
    for _ in range(5):
        error, seconds = timed(lambda: lim.hit("k"))
        assert isinstance(error, ConnectionError), error
        assert isinstance(error, builtins_connection_error())
        assert f"127.0.0.1:{server.port}" in str(error)
        assert seconds < HANG
    assert "circuit breaker open" in str(timed(lambda: lim.hit("k"))[0])
    with pytest.raises(ConnectionError):
        lim.peek("k")
    server.start()
    deadline = time.monotonic() + 5
    while True:
        try:
            assert lim.hit("k").source == "redis"
            break
        except ConnectionError:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    assert redis_store.breaker_state == "closed"


def builtins_connection_error() -> type[BaseException]:
    import builtins

    return builtins.ConnectionError


def test_a_frozen_server_costs_at_most_the_timeout(make_server: Callable[..., RedisServer]) -> None:
    server = make_server()
    redis_store = store(server)
    lim = _flux.Limiter(5, 3600, store=redis_store)
    lim.hit("k")
    server.freeze()
    try:
        for _ in range(4):
            result, seconds = timed(lambda: lim.hit("k"))
            assert isinstance(result, _flux.RateLimitResult) and result.fail_open
            assert seconds < HANG
    finally:
        server.thaw()
    wait_closed(redis_store, lim)


def test_the_gil_is_released_during_a_round_trip(make_server: Callable[..., RedisServer]) -> None:
    server = make_server()
    lim = _flux.Limiter(5, 3600, store=store(server, timeout_ms=1000, breaker_threshold=100))
    lim.hit("k")
    server.freeze()
    done = threading.Event()

    def hit() -> None:
        lim.hit("k")
        done.set()

    try:
        thread = threading.Thread(target=hit)
        thread.start()
        # While that hit waits on the frozen server, this thread keeps running Python.
        spins = 0
        while not done.is_set() and spins < 200_000:
            spins += 1
        assert not done.is_set(), "the hit returned before this thread could run"
        assert spins == 200_000
    finally:
        server.thaw()
    thread.join(HANG)
    assert done.is_set()


def test_wrong_password_is_a_clear_error(make_server: Callable[..., RedisServer]) -> None:
    server = make_server("--requirepass", "s3cret")
    wrong = _flux.RedisStore(server.url, password="nope", timeout_ms=TIMEOUT_MS)
    with pytest.raises(ConnectionError, match="rejected the credentials") as error:
        wrong.ping()
    assert "nope" not in str(error.value)
    closed = _flux.Limiter(5, 60, store=wrong, fail_silently=False)
    with pytest.raises(ConnectionError, match="password"):
        closed.hit("k")
    assert _flux.Limiter(5, 60, store=wrong).hit("k").fail_open
    right = RateLimiter(5, 60, config=redis_config(server.url, password=None))
    assert right.hit("k").fail_open  # no password at all: refused too, and fails open
    good = _flux.RedisStore(f"redis://:s3cret@127.0.0.1:{server.port}")
    good.ping()
    assert _flux.Limiter(5, 60, store=good).hit("k").source == "redis"


def test_a_limit_may_override_the_failure_policy(make_server: Callable[..., RedisServer]) -> None:
    server = make_server()
    opened = store(server, fail_silently=True)
    closed = store(server, fail_silently=False)
    strict = _flux.Limiter(5, 60, store=opened, fail_silently=False)
    lenient = _flux.Limiter(5, 60, store=closed, fail_silently=True)
    assert (strict.fail_silently, lenient.fail_silently) == (False, True)
    server.kill()
    with pytest.raises(ConnectionError):
        strict.hit("k")
    assert lenient.hit("k").fail_open
    assert _flux.Limiter(5, 60, store=opened).hit("k").fail_open
    with pytest.raises(ConnectionError):
        _flux.Limiter(5, 60, store=closed).hit("k")
    # A multi-limit hit fails open only if every limit does.
    loose = _flux.Limiter(9, 60, store=opened, prefix="loose:")
    looser = _flux.Limiter(9, 60, store=opened, prefix="looser:")
    assert all(r.fail_open for r in _flux.hit_many([(loose, "k", 1), (looser, "k", 1)]))
    with pytest.raises(ConnectionError):
        _flux.hit_many([(loose, "m", 1), (strict, "m", 1)])


def test_rate_limiter_takes_the_policy_from_config(make_server: Callable[..., RedisServer]) -> None:
    server = make_server()
    config = redis_config(server.url, fail_silently=False, timeout_ms=TIMEOUT_MS)
    lim = RateLimiter(5, 60, config=config)
    lenient = RateLimiter(5, 60, config=config, fail_silently=True)
    assert lim.fail_silently is False and lenient.fail_silently is True
    server.kill()
    with pytest.raises(ConnectionError):
        lim.hit("k")
    assert lenient.hit("k").fail_open


def test_async_hits_fail_open_or_raise_when_redis_is_down(
    make_server: Callable[..., RedisServer],
) -> None:
    server = make_server()
    redis_store = store(server)
    lenient = RateLimiter(5, 60, config=redis_config(server.url, timeout_ms=TIMEOUT_MS))
    strict = _flux.Limiter(5, 60, store=redis_store, fail_silently=False)
    server.kill()

    async def run() -> None:
        results = await asyncio.gather(*(lenient.ahit("k") for _ in range(20)))
        assert all(r.allowed and r.fail_open for r in results)
        with pytest.raises(ConnectionError):
            await strict.ahit("k")
        many = await lenient.ahit_many([(lenient, "k", 1)])
        assert many[0].fail_open

    start = time.monotonic()
    asyncio.run(run())
    assert time.monotonic() - start < 2 * HANG


def test_a_named_limit_sets_its_own_policy_in_flux_toml(
    make_server: Callable[..., RedisServer], tmp_path: Path
) -> None:
    if "fail_silently" not in {f.name for f in fields(LimitConfig)}:
        pytest.skip("flux.config has no [rate_limits.<name>] fail_silently yet")
    server = make_server()
    path = tmp_path / "flux.toml"
    path.write_text(
        f'[redis]\nurl = "{server.url}"\ntimeout_ms = {TIMEOUT_MS}\n\n'
        "[flux]\nfail_silently = true\n\n"
        "[rate_limits.payments]\nrequests = 5\nperiod = 60\nfail_silently = false\n\n"
        "[rate_limits.search]\nrequests = 50\nperiod = 60\n"
    )
    config = load_config(path)
    payments = RateLimiter.from_config("payments", config=config)
    search = RateLimiter.from_config("search", config=config)
    assert (payments.fail_silently, search.fail_silently) == (False, True)
    assert payments.store is search.store
    server.kill()
    with pytest.raises(ConnectionError):
        payments.hit("k")
    assert search.hit("k").fail_open


@pytest.mark.parametrize("connected_first", [True, False], ids=["pooled", "connecting"])
def test_a_frozen_server_never_holds_a_hit_past_the_timeout(
    make_server: Callable[..., RedisServer], connected_first: bool
) -> None:
    # Week-one fault: probes took two budgets (a connect of timeout_ms, then a command of
    # timeout_ms). Every hit, probes and first connects included, gets one budget in all.
    server = make_server()
    redis_store = store(server, breaker_cooldown_ms=50)
    lim = _flux.Limiter(5, 3600, store=redis_store)
    if connected_first:
        lim.hit("k")
    server.freeze()
    durations = []
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            result, seconds = timed(lambda: lim.hit("k"))
            assert isinstance(result, _flux.RateLimitResult) and result.fail_open
            durations.append(seconds)
    finally:
        server.thaw()
    # At least the three failures that open the breaker and a few probes waited on Redis.
    assert sum(d > TIMEOUT_MS / 2000 for d in durations) >= 4, durations
    assert max(durations) <= (TIMEOUT_MS + 50) / 1000, sorted(durations)[-5:]
