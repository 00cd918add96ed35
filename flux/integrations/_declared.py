"""Declared limits: one quota each, its limiter built when it is declared and shared by name.

The first step of a limit's life, before any request (docs/architecture.md, "One hit", step 3):

- :class:`Limit`: one quota, its :class:`~flux.RateLimiter` built when it is declared (so a bad
  preset name fails at decoration time) and kept for every request.
- :func:`shared_limit`: a named limit is one bucket wherever it is used.
- :func:`limits_for` / :func:`named_rates`: the limits a declaration (preset, rate string or
  ``[rate_limit]``) names.

Tests swap the clock of every declared limit through :func:`use_clock` / :func:`reset_all`
(used by :mod:`flux.testing`): each limit rebuilds its limiter, empty, the next time it is used.
"""

from __future__ import annotations

import threading
from typing import Any

from flux.config import FluxConfig, LimitConfig, RateLimitPolicy, get_config
from flux.limiter import ManualClock, RateLimiter
from flux.rates import Rate, is_rate_string, parse_rates

__all__ = [
    "Limit",
    "current_clock",
    "limits_for",
    "named_rates",
    "reset_all",
    "shared_limit",
    "use_clock",
]

# --- the test hook: a clock for every declared limit, and a generation to rebuild them ------
_clock: ManualClock | None = None
_generation = 0


def use_clock(clock: ManualClock | None) -> None:
    """Make every declared limit use ``clock`` (None: the system clock), starting empty."""
    global _clock
    _clock = clock
    reset_all()


def reset_all() -> None:
    """Empty every declared limit: each rebuilds its limiter the next time it is used."""
    global _generation
    _generation += 1


def current_clock() -> ManualClock | None:
    """The clock installed by :func:`use_clock`, if any."""
    return _clock


class Limit:
    """One declared quota and its limiter; ``name`` names its bucket (a preset, usually).

    A name that is not a ``[rate_limits.<name>]`` preset is a ConfigError, unless both
    ``requests`` and ``period`` are given: then nothing is missing and the name only names
    the bucket (flux-limiter accepted such names).
    """

    name: str | None
    preset: str | None
    config: FluxConfig
    awaitable: bool

    def __init__(
        self,
        name: str | None = None,
        *,
        requests: int | None = None,
        period: float | None = None,
        burst: int | None = None,
        policy: RateLimitPolicy | str | None = None,
        config: FluxConfig | None = None,
    ) -> None:
        """Resolve the quota against ``config`` (default: :func:`flux.get_config`) now."""
        self.name = name
        self.config = config if config is not None else get_config()
        complete = requests is not None and period is not None
        self.preset = None if complete and name not in self.config.rate_limits else name
        # What names the limiter's keys when it is no preset: the bucket of the (first) rule
        # that applies it (see for_bucket); a preset is named by itself.
        self.bucket: str | None = None
        self._twins: dict[str, Limit] = {}
        self._args = (requests, period, burst, policy)
        self._lock = threading.Lock()
        self._generation = _generation
        self._limiter = self._build()
        # Whether a hit is a round trip worth awaiting (a Redis store); the embedded store
        # answers inline. A rebuild after a test reset keeps the store.
        self.awaitable = getattr(self._limiter, "store", None) is not None

    def _build(self) -> RateLimiter:
        requests, period, burst, policy = self._args
        if self.preset is None and (requests is None or period is None):
            # [rate_limit]'s quota, spelt out: a name given in code needs its quota given too.
            defaults = self.config.rate_limit
            if requests is None:
                requests = defaults.requests
                burst = defaults.burst if burst is None else burst
            period = defaults.period if period is None else period
        return RateLimiter(
            requests,
            period,
            burst=burst,
            policy=policy,
            config=self.config,
            name=self.preset if self.preset is not None else self.bucket,
            clock=_clock,
        )

    def for_bucket(self, bucket: str) -> Limit:
        """This limit with its keys named ``bucket`` (a preset keeps its own name).

        Every store names a limit's keys ``{key_prefix}{name}:{<identity>}:<algorithm>``, and
        analytics and ``flux clear`` show and take the same name and identity. The first rule
        names an unnamed limit in place; a declaration applied to a second function gets a
        limit of its own (its own bucket).
        """
        if self.preset is not None or self.bucket == bucket:
            return self
        with self._lock:
            if self.bucket is None:
                self.bucket = bucket
                self._limiter = self._build()
                self._twins[bucket] = self
                return self
            # One limit per bucket for the whole family of twins, kept: django's
            # method_decorator applies the decorator anew on every request.
            twin = self._twins.get(bucket)
            if twin is None:
                requests, period, burst, policy = self._args
                twin = Limit(
                    self.name,
                    requests=requests,
                    period=period,
                    burst=burst,
                    policy=policy,
                    config=self.config,
                )
                twin._twins = self._twins
                twin.bucket = bucket
                twin._limiter = twin._build()
                self._twins[bucket] = twin
            return twin

    @property
    def limiter(self) -> RateLimiter:
        """The limiter; rebuilt (empty) only after a test reset or clock change."""
        if self._generation != _generation:
            with self._lock:
                if self._generation != _generation:
                    self._limiter = self._build()
                    self._generation = _generation
        return self._limiter

    def describe(self) -> str:
        """``5/10s`` style quota text, to tell apart unnamed limits of one function."""
        limiter = self._limiter
        return Rate(limiter.requests, limiter.period).describe()


_shared: dict[tuple[Any, ...], Limit] = {}
_shared_lock = threading.Lock()


def shared_limit(
    name: str,
    *,
    requests: int | None,
    period: float | None,
    burst: int | None,
    policy: RateLimitPolicy | str | None,
    config: FluxConfig | None,
) -> Limit:
    """The one :class:`Limit` for preset ``name`` with these overrides.

    A named limit is one bucket wherever it is used (as flux-limiter's keys were): every view
    decorated with ``rate_limit("api")`` shares it. On the embedded store that means sharing
    the limiter object, since each limiter owns its memory.
    """
    config = config if config is not None else get_config()
    policy_key = str(RateLimitPolicy(policy)) if policy is not None else None
    # id(config): configs are not hashable, and the Limit keeps its config alive.
    key = (id(config), name, requests, period, burst, policy_key)
    with _shared_lock:
        limit = _shared.get(key)
        if limit is None:
            limit = Limit(
                name, requests=requests, period=period, burst=burst, policy=policy, config=config
            )
            _shared[key] = limit
        return limit


def limits_for(
    spec: str | None,
    *,
    requests: int | None = None,
    period: float | None = None,
    burst: int | None = None,
    policy: RateLimitPolicy | str | None = None,
    config: FluxConfig | None = None,
) -> tuple[Limit, ...]:
    """The limits a declaration names: a rate string gives one unnamed limit per rate; a
    preset gives its shared limit, plus one per further rate of its ``limit`` string (named
    ``<preset>[<quota>]``, so each quota has keys of its own); None gives ``[rate_limit]``'s.

    ``requests``/``period`` override a preset's first quota, as they always did; with a rate
    string they make no sense and are refused.
    """
    config = config if config is not None else get_config()
    if spec is not None and is_rate_string(spec):
        if requests is not None or period is not None:
            raise ValueError(
                f"give the quota either as the rate string {spec!r} or as requests and period, "
                "not both"
            )
        rates = parse_rates(spec)
        if burst is not None and len(rates) > 1:
            raise ValueError(f"burst applies to one rate; {spec!r} has {len(rates)}")
        return tuple(
            Limit(requests=r.requests, period=r.period, burst=burst, policy=policy, config=config)
            for r in rates
        )
    base: LimitConfig | None
    if spec is None:
        base = config.rate_limit
        first = Limit(requests=requests, period=period, burst=burst, policy=policy, config=config)
    else:
        base = config.limit(spec) if requests is None or period is None else None
        first = shared_limit(
            spec, requests=requests, period=period, burst=burst, policy=policy, config=config
        )
    if base is None or requests is not None or period is not None or len(base.rates) == 1:
        return (first,)
    policy = policy if policy is not None else base.policy
    if spec is None:  # unnamed: every rate in the declaring view's own buckets
        return (
            first,
            *(
                Limit(requests=r.requests, period=r.period, policy=policy, config=config)
                for r in base.rates[1:]
            ),
        )
    extra = (
        shared_limit(
            f"{spec}[{rate.describe()}]",
            requests=rate.requests,
            period=rate.period,
            burst=None,
            policy=policy,
            config=config,
        )
        for rate in base.rates[1:]
    )
    return (first, *extra)


def named_rates(
    name: str,
    text: str,
    *,
    burst: int | None = None,
    policy: RateLimitPolicy | str | None = None,
    config: FluxConfig | None = None,
) -> tuple[Limit, ...]:
    """The limits of rate string ``text`` named ``name`` (``rate_limit("login", limit="5/m")``):
    the first rate is named ``name``, each further one ``name[<quota>]``."""
    rates = parse_rates(text)
    if burst is not None and len(rates) > 1:
        raise ValueError(f"burst applies to one rate; {text!r} has {len(rates)}")
    return tuple(
        shared_limit(
            name if i == 0 else f"{name}[{rate.describe()}]",
            requests=rate.requests,
            period=rate.period,
            burst=burst,
            policy=policy,
            config=config,
        )
        for i, rate in enumerate(rates)
    )
