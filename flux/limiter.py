"""RateLimiter and RateLimitResult: the Python face of one rate limit.

``RateLimiter`` subclasses the native ``flux._flux.Limiter``, so ``hit`` runs straight in Rust
with no Python frame in between; this module only resolves configuration.
"""

from __future__ import annotations

from typing import Any

from flux import _flux
from flux._flux import ManualClock, RateLimitResult
from flux.config import STORAGE_MEMORY, FluxConfig, LimitConfig, RateLimitPolicy, get_config
from flux.exceptions import ConfigError, RateLimitExceeded

__all__ = ["ManualClock", "RateLimitResult", "RateLimiter", "create_limiter"]


class RateLimiter(_flux.Limiter):
    """One rate limit: ``requests`` per ``period`` seconds, ``burst`` at once, by ``policy``.

    Unset arguments come from ``config`` (default: the process-wide flux.toml, see
    :func:`flux.get_config`), section ``[rate_limit]``. ``hit(key, endpoint=None, cost=1)``
    counts a hit if it passes and returns a :class:`RateLimitResult`; a denied hit changes
    nothing. Thread-safe. ``clock`` (a :class:`ManualClock`) is for tests.
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
        **legacy: Any,
    ) -> RateLimiter:
        """Resolve the quota against ``config`` and build the native limiter."""
        unknown = set(legacy) - {"redis_host", "redis_port"}
        if unknown:
            raise TypeError(f"RateLimiter() got unexpected keyword arguments: {sorted(unknown)}")
        config = config if config is not None else get_config()
        defaults: LimitConfig = config.limit(name) if name is not None else config.rate_limit
        if burst is None:
            # A preset's burst goes with its own requests; an explicit `requests` overrides both.
            burst = defaults.burst if requests is None else requests
        requests = defaults.requests if requests is None else requests
        period = defaults.period if period is None else period
        policy_name = str(RateLimitPolicy(policy)) if policy is not None else str(defaults.policy)
        if config.storage != STORAGE_MEMORY:
            raise ConfigError(
                f"storage {config.storage!r} is not available in this build; "
                'use storage = "memory"',
                path=config.path,
                key="flux.storage",
            )
        _check_int("requests", requests)
        _check_int("burst", burst)
        self = super().__new__(
            cls,
            requests,
            period,
            burst=burst,
            policy=policy_name,
            max_keys=max_keys if max_keys is not None else config.flux.max_keys,
            clock=clock,
            prefix=f"{config.flux.key_prefix}{name + ':' if name else ''}",
        )
        self.config = config
        self.name = name
        return self

    @classmethod
    def from_config(cls, name: str, config: FluxConfig | None = None) -> RateLimiter:
        """The limit named ``[rate_limits.<name>]`` in flux.toml.

        Raises :class:`ConfigError` naming the unknown limit and listing the known ones.
        """
        return cls(config=config, name=name)

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
            f"burst={self.burst}, policy={self.policy!r}, storage={self.config.storage!r})"
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
