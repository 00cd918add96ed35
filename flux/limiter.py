"""RateLimiter and RateLimitResult: the Python face of one rate limit.

``RateLimiter`` subclasses the native ``flux._flux.Limiter``, so ``hit`` runs straight in Rust
with no Python frame in between; this module only resolves configuration: the quota, and the
store (the embedded one, the process-wide Redis store of ``[redis]``, see ``flux._redis``, or
the shared-memory region of ``[shared]``, see ``flux._shared``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flux import _flux, _prefork, _wait
from flux._flux import ManualClock, RateLimitResult
from flux._logging import apply_log_settings
from flux._redis import preload_scripts, shared_store
from flux._shared import shared_region
from flux.config import (
    STORAGE_REDIS,
    STORAGE_SHARED,
    FluxConfig,
    LimitConfig,
    RateLimitPolicy,
    get_config,
)
from flux.exceptions import RateLimitExceeded
from flux.rates import parse_rates

# preload_scripts is re-exported here because flux-limiter defined it in flux.limiter.
__all__ = ["ManualClock", "RateLimitResult", "RateLimiter", "create_limiter", "preload_scripts"]


class RateLimiter(_flux.Limiter):
    """One rate limit: ``requests`` per ``period`` seconds, ``burst`` at once, by ``policy``.

    Unset arguments come from ``config`` (default: the process-wide flux.toml, see
    :func:`flux.get_config`), section ``[rate_limit]`` or, with ``name``,
    ``[rate_limits.<name>]``; a ``name`` that is no preset names a limit whose quota is given
    here (``RateLimiter(3, 60, name="login")``). Unnamed limits are named by their quota
    (``3/60s``), so two unnamed limits of different quotas never share a key.
    ``hit(key, endpoint=None, cost=1)`` counts a hit if it passes and returns a
    :class:`RateLimitResult`; a denied hit changes nothing. ``await ahit(...)`` is the same
    for async code. ``refund(key, cost=1)`` (``await arefund(...)``) gives a hit back, never
    above full capacity. Thread-safe.

    Storage follows ``config.storage``: the embedded store; Redis, shared by every process
    (one connection pool per process for all limiters of one ``[redis]`` section); or the
    shared-memory region of ``[shared]``, shared exactly by every process of the machine that
    names it (gunicorn or uvicorn workers, Celery workers, scripts, C programs). On Redis,
    ``fail_silently`` (default: the limit's own ``fail_silently``, else ``[flux]
    fail_silently``) says what a hit does when Redis fails: pass, flagged
    ``result.fail_open``, or raise :class:`flux.ConnectionError`.

    ``clock`` (a :class:`ManualClock`) is for tests; on Redis it replaces the server's time.
    """

    config: FluxConfig
    name: str | None

    def __new__(
        cls,
        requests: int | None = None,
        period: float | None = None,
        *,
        burst: int | None = None,
        policy: RateLimitPolicy | str | None = None,
        config: FluxConfig | None = None,
        name: str | None = None,
        clock: ManualClock | None = None,
        max_keys: int | None = None,
        fail_silently: bool | None = None,
        **legacy: Any,
    ) -> RateLimiter:
        """Resolve the quota against ``config`` and build the native limiter."""
        unknown = set(legacy) - {"redis_host", "redis_port"}
        if unknown:
            raise TypeError(f"RateLimiter() got unexpected keyword arguments: {sorted(unknown)}")
        config = config if config is not None else get_config()
        apply_log_settings(config.flux.console_logging, config.flux.log_file)
        if name is not None:
            check_name(name)
        defaults: LimitConfig
        if name is not None and (name in config.rate_limits or requests is None or period is None):
            defaults = config.limit(name)  # a preset (or an unknown name: ConfigError)
        else:
            # Unnamed, or a limit named in code with its quota given here (burst and policy,
            # when not given, come from [rate_limit]).
            defaults = config.rate_limit
        if burst is None:
            # A preset's burst goes with its own requests; an explicit `requests` overrides both.
            burst = defaults.burst if requests is None else requests
        requests = defaults.requests if requests is None else requests
        period = defaults.period if period is None else period
        policy_name = str(RateLimitPolicy(policy)) if policy is not None else str(defaults.policy)
        _check_int("requests", requests)
        _check_int("burst", burst)
        named = f"{name}:" if name else ""
        redis = config.storage == STORAGE_REDIS
        if redis and fail_silently is None:
            # [rate_limits.<name>] fail_silently, where the configuration has it.
            fail_silently = getattr(defaults, "fail_silently", None)
        shared = config.storage == STORAGE_SHARED
        if shared and max_keys is not None:
            raise ValueError(
                "invalid argument: max_keys bounds the memory store; the shared region's "
                "size is [shared] max_keys"
            )
        if not redis and not shared and max_keys is None:
            max_keys = config.flux.max_keys
        region = shared_region(config) if shared else None
        automatic = False
        if region is None and not redis and not config.storage_configured and max_keys is None:
            # No storage configured: the workers of one pre-fork server share their limits.
            region = _prefork.server_region()
            automatic = region is not None
            if region is None and _prefork.detect() is None:
                _prefork.warn_if_several_workers()

        def build(region: _flux.SharedRegion | None) -> RateLimiter:
            return super(RateLimiter, cls).__new__(  # type: ignore[return-value]
                cls,
                requests,
                period,
                burst=burst,
                policy=policy_name,
                max_keys=max_keys,
                clock=clock,
                # The Redis store adds [flux] key_prefix to every key itself; other stores'
                # keys carry it (in a shared region it keeps apart two applications' limits).
                prefix=named if redis else f"{config.flux.key_prefix}{named}",
                store=shared_store(config) if redis else None,
                fail_silently=fail_silently,
                region=region,
            )

        try:
            self = build(region)
        except ValueError as exc:
            if not automatic:
                raise
            # A limit the shared store cannot hold (sliding_log, a very large sliding window)
            # was not asked to be shared: it keeps the per-process store, said once.
            _prefork.cannot_share(policy_name, exc)
            self = build(None)
        self.config = config
        self.name = name
        return self

    @classmethod
    def parse(cls, text: str, **options: Any) -> RateLimiter:
        """The limiter of a one-rate string: ``RateLimiter.parse("100/minute")``.

        ``options`` are the other arguments of :class:`RateLimiter` (``burst``, ``policy``,
        ``name``, ``config``...). A string of several rates is a ValueError pointing at
        :meth:`parse_all`.
        """
        rates = parse_rates(text)
        if len(rates) > 1:
            raise ValueError(
                f"{text!r} holds {len(rates)} rates: RateLimiter.parse_all returns one limiter "
                "per rate, to check together with RateLimiter.hit_many"
            )
        return cls(rates[0].requests, rates[0].period, **options)

    @classmethod
    def parse_all(cls, text: str, **options: Any) -> list[RateLimiter]:
        """One limiter per rate of ``text`` (``"10/second; 1000/day"``), to check together,
        all or nothing, with ``RateLimiter.hit_many([(l, key, 1) for l in limiters])``.

        With ``name``, the first rate is named ``name`` and each further one
        ``name[<quota>]``, so every quota has keys of its own.
        """
        rates = parse_rates(text)
        if options.get("burst") is not None and len(rates) > 1:
            raise ValueError(f"burst applies to one rate; {text!r} has {len(rates)}")
        name = options.pop("name", None)
        return [
            cls(
                rate.requests,
                rate.period,
                name=name if name is None or i == 0 else f"{name}[{rate.describe()}]",
                **options,
            )
            for i, rate in enumerate(rates)
        ]

    @classmethod
    def from_config(cls, name: str, config: FluxConfig | None = None) -> RateLimiter:
        """The limit named ``[rate_limits.<name>]`` in flux.toml (its first rate, when its
        ``limit`` string has several: the web decorators and middlewares check them all).

        Raises :class:`ConfigError` naming the unknown limit and listing the known ones.
        """
        return cls(config=config, name=name)

    async def ahit(
        self, key: str, endpoint: object | None = None, cost: int = 1
    ) -> RateLimitResult:
        """:meth:`hit` for async code.

        On Redis the event loop never blocks on the round trip: the request is queued for the
        store's I/O threads, which pipeline every concurrent request onto shared connections,
        so many concurrent ``ahit`` calls cost a few round trips, not one each. On the
        embedded store it is :meth:`hit` (no I/O).
        """
        return await _flux.Limiter.ahit(self, key, endpoint, cost)

    def refund(self, key: str, cost: int = 1) -> RateLimitResult:
        """Give back ``cost`` units of ``key``'s capacity: a hit that should not count after all.

        For a hit taken before the work it guards, when the outcome says it should not count
        (count only failed logins: hit, then refund when the login succeeded). Atomic with
        every other hit and refund on the key, in every store. A refund never lifts the key
        above full capacity (refunding more than was taken stops at full), and a key that is
        back at full capacity, expired or never seen is left as it is (no state is created).
        Returns what a hit of cost 1 would see right after (``allowed`` says whether it would
        pass). ``cost`` is checked as for :meth:`hit` (``ValueError`` unless 1 <= cost <=
        ``limit``).

        On Redis a refund is one round trip. When Redis fails, ``fail_silently`` decides as
        for a hit: the refund is lost (the hit stays counted) and the result is flagged
        ``fail_open``, or :class:`flux.ConnectionError` is raised.
        """
        return _flux.Limiter.refund(self, key, cost)

    async def arefund(self, key: str, cost: int = 1) -> RateLimitResult:
        """:meth:`refund` for async code.

        On Redis the event loop never waits on the round trip: the refund is queued for the
        store's I/O threads, as :meth:`ahit` is. On the embedded and shared stores it is
        :meth:`refund` (no I/O).
        """
        return await _flux.Limiter.arefund(self, key, cost)

    @staticmethod
    def hit_many(items: Sequence[tuple[_flux.Limiter, str, int]]) -> list[RateLimitResult]:
        """One hit against several limits, atomically: all pass and count, or none counts.

        ``items`` are ``(limiter, key, cost)``, all on the embedded store or all on one Redis
        store (then one script, one round trip). See :func:`flux._flux.hit_many`.
        """
        return _flux.hit_many(list(items))

    @staticmethod
    async def ahit_many(
        items: Sequence[tuple[_flux.Limiter, str, int]],
    ) -> list[RateLimitResult]:
        """:meth:`hit_many` for async code (on Redis the loop never waits on the round trip)."""
        return await _flux.ahit_many(list(items))

    async def arequire(
        self, key: str, endpoint: str | None = None, cost: int = 1
    ) -> RateLimitResult:
        """:meth:`require` for async code."""
        result = await self.ahit(key, endpoint, cost)
        if not result.allowed:
            raise RateLimitExceeded(key, result.retry_after, result=result)
        return result

    def acquire(self, key: str, cost: int = 1, timeout: float | None = None) -> RateLimitResult:
        """Wait until a hit of ``cost`` on ``key`` is allowed, and return its result.

        Between tries it sleeps exactly the retry time the denied hit reported (no polling).
        ``timeout`` (seconds, default: wait as long as it takes) bounds the wait: when the next
        sleep would end past it, :class:`RateLimitExceeded` is raised at once, carrying the
        last denied result; ``timeout=0`` is a single try. A cost above the capacity raises
        ``ValueError``, as :meth:`hit` does (such a hit could never pass). Blocks the calling
        thread: async code uses :meth:`aacquire`.
        """
        return _wait.acquire(self, key, cost, timeout)

    async def aacquire(
        self, key: str, cost: int = 1, timeout: float | None = None
    ) -> RateLimitResult:
        """:meth:`acquire` for async code: sleeps with ``asyncio.sleep``, never blocking the loop.

        On Redis each try is an awaited :meth:`ahit`. Cancelling the waiter consumes nothing:
        a hit in flight when it is cancelled still completes and, if it was allowed, is given
        back with :meth:`refund` when this limiter has one.
        """
        return await _wait.aacquire(self, key, cost, timeout)

    @property
    def storage(self) -> str:
        """Where this limit's state lives: ``"memory"``, ``"redis"`` or ``"shared"``."""
        if self.region is not None:
            return "shared"
        return "memory" if self.store is None else "redis"

    def is_allowed(self, key: str, cost: int = 1) -> bool:
        """Counts a hit on ``key`` and says whether it passed."""
        return self.hit(key, cost=cost).allowed

    def require(self, key: str, endpoint: str | None = None, cost: int = 1) -> RateLimitResult:
        """Counts a hit on ``key``; raises :class:`RateLimitExceeded` when it is denied."""
        result = self.hit(key, endpoint, cost)
        if not result.allowed:
            raise RateLimitExceeded(key, result.retry_after, result=result)
        return result

    def __repr__(self) -> str:
        named = f"name={self.name!r}, " if self.name else ""
        return (
            f"RateLimiter({named}requests={self.requests}, period={self.period:g}, "
            f"burst={self.burst}, policy={self.policy!r}, storage={self.storage!r})"
        )


def check_name(name: str) -> None:
    """Raise ValueError unless ``name`` can name a limit.

    A name is part of every key of its limit and of the ``RateLimit-Policy`` header: it must
    not be empty, and braces (a Redis Cluster hash tag) and control characters are refused.
    """
    if not isinstance(name, str):
        raise TypeError(f"a limit name must be a str, got {type(name).__name__}")
    if not name:
        raise ValueError("a limit name must not be empty")
    bad = [c for c in name if c in "{}" or ord(c) < 0x20 or ord(c) == 0x7F]
    if bad:
        raise ValueError(
            f"limit name {name!r} contains {bad[0]!r}: braces and control characters "
            "cannot appear in a limit name"
        )


def _check_int(what: str, value: object) -> None:
    # bool is an int subclass, and 2.5 requests is a unit mistake: name both clearly.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {type(value).__name__} {value!r}")


def create_limiter(
    name: str | None = None,
    *,
    requests: int | None = None,
    period: float | None = None,
    burst: int | None = None,
    policy: RateLimitPolicy | str | None = None,
    config: FluxConfig | None = None,
) -> RateLimiter:
    """A :class:`RateLimiter` from the preset ``name`` (or ``[rate_limit]``), with overrides."""
    return RateLimiter(requests, period, burst=burst, policy=policy, config=config, name=name)
