"""Helpers for testing applications that use flux: time under control, clean state, assertions.

Decorated views and middlewares build their limiters once, at import time. These helpers
reach them anyway: :func:`manual_clock` makes every declared limit run on a
:class:`~flux.ManualClock` (so tests move time instead of sleeping), and :func:`reset` empties
every declared limit. Both apply from the next request on.

With pytest, enable the fixtures in your top-level ``conftest.py``::

    pytest_plugins = ["flux.testing"]

    def test_login_is_limited(client, flux_clock):
        assert_limited_after(lambda: client.post("/login"), 5)
        flux_clock.advance(60)
        assert client.post("/login").status_code == 200

Fixtures: ``flux_clock`` (a manual clock installed for the test, state emptied before and
after) and ``flux_reset`` (state emptied before and after, real time).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flux.exceptions import RateLimitExceeded
from flux.integrations._declared import current_clock, reset_all, use_clock
from flux.limiter import ManualClock

__all__ = ["ManualClock", "assert_limited_after", "manual_clock", "reset", "use_clock"]

TOO_MANY_REQUESTS = 429
# A fixed start keeps window boundaries (fixed_window) identical from run to run.
DEFAULT_START = 1_700_000_000.0


def reset() -> None:
    """Empty every limit declared by ``rate_limit`` and the middlewares (embedded store)."""
    reset_all()


@contextmanager
def manual_clock(start: float = DEFAULT_START) -> Iterator[ManualClock]:
    """Run every declared limit on a new :class:`ManualClock` inside the block.

    Limits start empty inside the block, and empty again (on the previous clock) after it.
    """
    previous = current_clock()
    clock = ManualClock(start)
    use_clock(clock)
    try:
        yield clock
    finally:
        use_clock(previous)


def _status(outcome: Any) -> int | None:
    status = getattr(outcome, "status_code", None)
    if status is None:
        status = getattr(outcome, "status", None)
    return status if isinstance(status, int) else None


def assert_limited_after(
    call: Callable[[], Any], n: int, *, status: int = TOO_MANY_REQUESTS
) -> Any:
    """Assert ``call`` succeeds ``n`` times, then is limited; returns the limited outcome.

    ``call`` makes one request with a test client (anything with ``status_code``: Django,
    Flask, httpx/Starlette responses) or calls a plain decorated function. Limited means
    ``status`` (429) for responses, :class:`~flux.RateLimitExceeded` for plain calls, which
    is then returned.
    """
    for attempt in range(1, n + 1):
        try:
            outcome = call()
        except RateLimitExceeded as exc:
            raise AssertionError(f"call {attempt} of {n} was limited too early: {exc}") from exc
        if _status(outcome) == status:
            raise AssertionError(f"call {attempt} of {n} got {status} too early")
    try:
        outcome = call()
    except RateLimitExceeded as exc:
        return exc
    got = _status(outcome)
    if got != status:
        raise AssertionError(f"call {n + 1} was not limited: expected {status}, got {got!r}")
    return outcome


try:
    import pytest
except ImportError:  # pragma: no cover - the helpers work without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def flux_clock() -> Iterator[ManualClock]:
        """A manual clock driving every declared flux limit during the test."""
        with manual_clock() as clock:
            yield clock

    @pytest.fixture
    def flux_reset() -> Iterator[None]:
        """Every declared flux limit emptied before and after the test."""
        reset()
        yield
        reset()
