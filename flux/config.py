"""flux.toml: where it is found, what it may contain, and the validated configuration.

Search order (the first that applies wins):

1. the path passed to :func:`load_config` / :func:`reload_config`;
2. ``$FLUX_CONFIG``;
3. ``./flux.toml``, then ``./config/flux.toml`` (relative to the current directory);
4. none found: built-in defaults (embedded memory store).

A path passed to :func:`load_config` must exist. A ``$FLUX_CONFIG`` naming a file that does
not exist logs one warning naming it and gives the built-in defaults (as flux-limiter did, so a
deployment that sets the variable everywhere still starts).

Sections: ``[redis]``, ``[shared]``, ``[flux]``, ``[analytics]``, ``[rate_limit]`` (the default
limit) and ``[rate_limits.<name>]`` (named limits). Every value is checked: a malformed file, an
unknown section or key, a wrong type (``true`` is not a number) or an out-of-range value raises
:class:`~flux.exceptions.ConfigError` naming the file, the dotted key and what was expected.
Nothing falls back to defaults silently.

Named limits inherit from ``[rate_limit]``: a ``[rate_limits.<name>]`` table that omits
``requests``, ``period`` or ``policy`` takes the default limit's value. ``burst`` follows
``requests``: it defaults to the named limit's own ``requests`` when that table sets
``requests``, and is inherited together with ``requests`` when the table sets neither (as
flux-limiter's ``RateLimiter.from_config`` did).

Storage: ``$FLUX_STORAGE`` when set; otherwise ``[flux] storage`` when set; otherwise
``"redis"`` when the file has a ``[redis]`` section or ``$FLUX_REDIS_URL`` is set; otherwise
``"memory"`` (and then, in a worker of a pre-fork server such as ``gunicorn -w 4``, a
shared-memory region private to that server: see ``flux._prefork``). ``"shared"`` is the
shared-memory store of ``[shared]``: every process of the machine that names the same region
shares the same limits exactly, with no server.

Environment: ``$FLUX_CONFIG`` (file path), ``$FLUX_STORAGE`` (``memory``, ``redis`` or
``shared``) and ``$FLUX_REDIS_URL`` (replaces ``[redis] url``, and with it host, port, password
and db). An empty variable counts as unset.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from os import PathLike
from pathlib import Path
from typing import Any, ClassVar, Optional
from urllib.parse import quote

from flux import _checks as checks
from flux import _flux
from flux._flat import FLAT_NAMES, REDIS_SECTION, Flat, flat_name
from flux._redis_py import redact_url
from flux.exceptions import ConfigError
from flux.rates import Rate, parse_rates

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - pyproject depends on tomli below 3.11
    import tomli as tomllib

__all__ = [
    "AnalyticsConfig",
    "FluxConfig",
    "FluxSettings",
    "LimitConfig",
    "NamedLimits",
    "RateLimitDefaults",
    "RateLimitPolicy",
    "RedisConfig",
    "SharedConfig",
    "find_config_file",
    "get_config",
    "load_config",
    "reload_config",
]

logger = logging.getLogger("flux.config")

# --- names: every file name, environment variable and section name lives here ----------------
CONFIG_ENV = "FLUX_CONFIG"
REDIS_URL_ENV = "FLUX_REDIS_URL"
STORAGE_ENV = "FLUX_STORAGE"
SEARCH_PATHS = ("flux.toml", "config/flux.toml")

SECTION_REDIS = "redis"
SECTION_SHARED = "shared"
SECTION_FLUX = "flux"
SECTION_ANALYTICS = "analytics"
SECTION_RATE_LIMIT = "rate_limit"
SECTION_RATE_LIMITS = "rate_limits"
SECTIONS = (
    SECTION_REDIS,
    SECTION_SHARED,
    SECTION_FLUX,
    SECTION_ANALYTICS,
    SECTION_RATE_LIMIT,
    SECTION_RATE_LIMITS,
)

STORAGE_MEMORY = "memory"
STORAGE_REDIS = "redis"
STORAGE_SHARED = "shared"
STORAGES = (STORAGE_MEMORY, STORAGE_REDIS, STORAGE_SHARED)

# The one proxy header believed from trusted proxies (never both: a proxy that writes one passes
# the other through from the client, who could then choose its own identity).
X_FORWARDED_FOR = "X-Forwarded-For"
FORWARDED = "Forwarded"  # RFC 7239
FORWARDED_HEADERS = (X_FORWARDED_FOR, FORWARDED)

# Keys of [redis] that a `url` replaces; giving both in one file is ambiguous, so it is an error.
URL_REPLACES = ("host", "port", "password", "db")

# Key names are the dataclass field names below; each checked field carries its checker here.
_CHECK = "flux.check"


def _check(check: checks.Check) -> dict[str, checks.Check]:
    """Field metadata marking a config key and the checker its values must pass."""
    return {_CHECK: check}


class RateLimitPolicy(str, Enum):
    """Rate limiting algorithms (docs/architecture.md, "Semantics"), named as in flux.toml.

    The members are the core's algorithms, in its order (``flux._flux.ALGORITHMS``; a test
    holds them equal). A name is read by the core, as the C ABI reads it: case, ``-``/``_``
    and surrounding blanks do not matter (``RateLimitPolicy("GCRA")``, as flux-limiter
    lower-cased its input). Python alone also takes flux-limiter's Lua name ``"fcfs"`` for
    ``fixed_window``.
    """

    GCRA = "gcra"
    TOKEN_BUCKET = "token_bucket"
    LEAKY_BUCKET = "leaky_bucket"
    FIXED_WINDOW = "fixed_window"
    SLIDING_WINDOW = "sliding_window"
    SLIDING_LOG = "sliding_log"

    def __str__(self) -> str:
        """The flux.toml name (``"gcra"``), as enum.StrEnum does on Python 3.11+."""
        return self.value

    @classmethod
    def _missing_(cls, value: object) -> RateLimitPolicy | None:
        if not isinstance(value, str):
            return None
        name = _FLUX_LIMITER_POLICIES.get(value.strip().lower(), value)
        try:
            # The core's reading of an algorithm name, the one every face shares.
            name = _flux.Limiter(1, 1.0, policy=name).policy
        except ValueError:
            return None
        return cls._value2member_map_.get(name)  # type: ignore[return-value]


# flux-limiter 0.1.19's names the core does not know (compatibility, tests/test_compat.py).
_FLUX_LIMITER_POLICIES = {"fcfs": "fixed_window"}


def _policy(value: Any) -> RateLimitPolicy:
    """Checker for ``policy`` keys."""
    expected = "one of " + ", ".join(f'"{name}"' for name in _flux.ALGORITHMS)
    if isinstance(value, RateLimitPolicy):
        return value
    if not isinstance(value, str):
        raise checks.Invalid(expected, value)
    try:
        return RateLimitPolicy(value)
    except ValueError:
        raise checks.Invalid(expected, value) from None


def _settle(obj: Any, section: str) -> None:
    """Check and normalise every checked field of a frozen dataclass instance, in place.

    The loader has already checked values with file and key context; this makes direct
    construction in code (``LimitConfig(requests=0)``) just as strict.
    """
    for f in fields(obj):
        check = f.metadata.get(_CHECK)
        if check is None:
            continue
        try:
            # Frozen dataclass: normalised values (tuples, enums, floats) go in via object.
            object.__setattr__(obj, f.name, check(getattr(obj, f.name)))
        except checks.Invalid as exc:
            raise ConfigError(exc.describe(), key=f"{section}.{f.name}") from None


@dataclass(frozen=True)
class RedisConfig:
    """``[redis]``: how to reach Redis when ``storage`` is ``"redis"``.

    ``url`` (``redis://``, ``rediss://`` or ``unix://``), when set, is authoritative: host, port,
    password and db are then ignored (a file may not set both; ``$FLUX_REDIS_URL`` overrides
    them). ``cluster`` is ``True`` (discover the cluster from host/port or url) or a tuple of
    ``"host:port"`` seed nodes. ``timeout_ms`` bounds both connecting and each command.
    """

    _SECTION: ClassVar[str] = SECTION_REDIS

    host: str = field(default="127.0.0.1", metadata=_check(checks.text(empty=False)))
    port: int = field(default=6379, metadata=_check(checks.integer(1, 65535)))
    pool_size: int = field(default=5, metadata=_check(checks.integer(1)))
    timeout_ms: int = field(default=200, metadata=_check(checks.integer(1)))
    url: str | None = field(default=None, metadata=_check(checks.optional(checks.redis_url)))
    cluster: bool | tuple[str, ...] = field(default=False, metadata=_check(checks.cluster))
    # repr=False: a config printed in a log or traceback must not show the password.
    password: str | None = field(
        default=None, repr=False, metadata=_check(checks.optional(checks.text()))
    )
    db: int = field(default=0, metadata=_check(checks.integer(0)))

    def __post_init__(self) -> None:
        _settle(self, self._SECTION)
        if self.cluster and self.db != 0:
            raise ConfigError(
                "expected 0 when cluster is enabled (Redis Cluster has only database 0), "
                f"got {self.db}",
                key=f"{self._SECTION}.db",
            )

    def connection_url(self, *, redact: bool = False) -> str:
        """The URL to connect to: ``url`` if set, else one built from host/port/password/db.

        ``redact=True`` replaces the password with ``***`` (for logs and ``flux check``).
        """
        if self.url is not None:
            return redact_url(self.url) if redact else self.url
        host = f"[{self.host}]" if ":" in self.host else self.host
        auth = ""
        if self.password is not None:
            auth = ":***@" if redact else f":{quote(self.password, safe='')}@"
        return f"redis://{auth}{host}:{self.port}/{self.db}"


@dataclass(frozen=True)
class SharedConfig:
    """``[shared]``: the shared-memory region when ``storage`` is ``"shared"``.

    ``path`` is the region file (``None``: ``/dev/shm/flux-<uid>-<key_prefix>`` on Linux, the
    temporary directory elsewhere; the C ABI's default is the same). ``max_keys`` is the most
    keys the region holds at once, every limit together (``None``: 65536, 2.5 MiB); it sizes
    the region when it is created, and every process naming the region must agree on it. The
    region never grows: a flood of new keys reuses the slots of keys back at full capacity,
    then evicts the least recently used.
    """

    _SECTION: ClassVar[str] = SECTION_SHARED

    path: str | None = field(
        default=None, metadata=_check(checks.optional(checks.text(empty=False)))
    )
    max_keys: int | None = field(
        default=None, metadata=_check(checks.optional(checks.integer(1, 1 << 25)))
    )

    def __post_init__(self) -> None:
        _settle(self, self._SECTION)


@dataclass(frozen=True)
class FluxSettings:
    """``[flux]``: behaviour shared by every limit.

    - ``key_prefix``: prepended to every storage key.
    - ``fail_silently``: when Redis fails, allow the request (true) or raise
      :class:`~flux.exceptions.ConnectionError` (false).
    - ``console_logging`` / ``log_file``: also log to stderr / to this file (default: neither).
    - ``jitter_enabled`` / ``jitter_max_ms``: add 0..jitter_max_ms of random delay to
      ``Retry-After`` so denied clients do not all return at once.
    - ``storage``: ``"memory"``, ``"redis"`` or ``"shared"``; ``None`` lets flux decide (see
      the module doc).
    - ``trusted_proxies``: networks whose ``X-Forwarded-For``/``Forwarded`` headers are believed
      (none by default); bare addresses are single-host networks.
    - ``hash_keys``: store a digest of each client identity instead of the identity itself, so
      no IP address or user name reaches Redis.
    - ``max_keys``: upper bound on keys held by the memory store (``None``: unbounded).
    - ``headers_on_success``: add the rate limit headers to allowed responses too.
    - ``ipv6_prefix``: group IPv6 clients by this prefix length (64: one bucket per /64), so a
      client cannot rotate through its subnet to multiply its quota (``None``: no grouping).
    - ``forwarded_header``: the header read from trusted proxies, ``"X-Forwarded-For"`` or
      ``"Forwarded"`` (RFC 7239).
    - ``exempt_ips``: networks whose clients are never limited (``["10.0.0.0/8", "::1"]``),
      matched against the client address after ``trusted_proxies``, so a forwarded header
      cannot claim an exempt address from an untrusted peer.
    """

    _SECTION: ClassVar[str] = SECTION_FLUX

    key_prefix: str = field(default="flux:", metadata=_check(checks.text()))
    fail_silently: bool = field(default=True, metadata=_check(checks.boolean))
    console_logging: bool = field(default=False, metadata=_check(checks.boolean))
    log_file: str | None = field(
        default=None, metadata=_check(checks.optional(checks.text(empty=False)))
    )
    jitter_enabled: bool = field(default=False, metadata=_check(checks.boolean))
    jitter_max_ms: int = field(default=500, metadata=_check(checks.integer(0)))
    storage: str | None = field(
        default=None, metadata=_check(checks.optional(checks.choice(STORAGES)))
    )
    trusted_proxies: tuple[checks.Network, ...] = field(
        default=(), metadata=_check(checks.networks)
    )
    hash_keys: bool = field(default=False, metadata=_check(checks.boolean))
    max_keys: int | None = field(default=None, metadata=_check(checks.optional(checks.integer(1))))
    headers_on_success: bool = field(default=True, metadata=_check(checks.boolean))
    ipv6_prefix: int | None = field(
        default=None, metadata=_check(checks.optional(checks.integer(1, 128)))
    )
    forwarded_header: str = field(
        default=FORWARDED_HEADERS[0], metadata=_check(checks.choice(FORWARDED_HEADERS))
    )
    exempt_ips: tuple[checks.Network, ...] = field(default=(), metadata=_check(checks.networks))

    def __post_init__(self) -> None:
        _settle(self, self._SECTION)


@dataclass(frozen=True)
class AnalyticsConfig:
    """``[analytics]``: decision events and the metrics server.

    ``port`` is the 127.0.0.1 port of the metrics server; ``stream`` and ``retention`` name and
    bound the Redis stream of events; ``sample_rate`` (0..1) is the share of decisions recorded.
    """

    _SECTION: ClassVar[str] = SECTION_ANALYTICS

    enabled: bool = field(default=False, metadata=_check(checks.boolean))
    port: int = field(default=4444, metadata=_check(checks.integer(1, 65535)))
    stream: str = field(default="flux:events", metadata=_check(checks.text(empty=False)))
    retention: int = field(default=100_000, metadata=_check(checks.integer(1)))
    sample_rate: float = field(default=1.0, metadata=_check(checks.fraction))

    def __post_init__(self) -> None:
        _settle(self, self._SECTION)


@dataclass(frozen=True)
class LimitConfig:
    """One quota: ``requests`` per ``period`` seconds, ``burst`` at once, by ``policy``.

    ``burst`` (the capacity) defaults to ``requests``. ``period`` may be a float (0.5 s). Field
    order matches flux-limiter's ``RateLimitDefaults(requests, period, burst)``.
    ``fail_silently`` (Redis only) overrides ``[flux] fail_silently`` for this limit; ``None``
    follows it. Named limits inherit it from ``[rate_limit]`` like the rest.
    """

    _SECTION: ClassVar[str] = SECTION_RATE_LIMIT

    requests: int = field(default=100, metadata=_check(checks.integer(1)))
    period: int | float = field(default=60, metadata=_check(checks.seconds))
    burst: int | None = field(default=None, metadata=_check(checks.optional(checks.integer(1))))
    policy: RateLimitPolicy = field(default=RateLimitPolicy.GCRA, metadata=_check(_policy))
    fail_silently: bool | None = field(
        default=None, metadata=_check(checks.optional(checks.boolean))
    )
    limit: str | None = field(default=None, metadata=_check(checks.optional(checks.rate_string)))

    def __post_init__(self) -> None:
        _settle(self, self._SECTION)
        if self.limit is not None:
            # The rate string replaces requests/period: its first rate is this limit's
            # quota, the others are checked with it (see `rates`).
            first = self.rates[0]
            object.__setattr__(self, "requests", first.requests)
            object.__setattr__(self, "period", first.period)
            if len(self.rates) > 1 and self.burst not in (None, first.requests):
                raise ConfigError(
                    f"burst applies to one rate; {self.limit!r} has {len(self.rates)}",
                    key=f"{self._SECTION}.burst",
                )
        if self.burst is None:
            object.__setattr__(self, "burst", self.requests)

    @property
    def rates(self) -> tuple[Rate, ...]:
        """Every quota of this limit: the ``limit`` string's rates, or ``requests/period``."""
        if self.limit is None:
            return (Rate(self.requests, self.period),)
        return parse_rates(self.limit)

    # flux-limiter kept named limits as dicts (``config.rate_limits["api"]["requests"]``,
    # ``.get("burst")``): the same reads work on a LimitConfig.
    def keys(self) -> list[str]:
        """The limit's key names, as in a ``[rate_limits.<name>]`` table."""
        return [f.name for f in fields(self)]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """``self[key]``, or ``default`` for a key a limit does not have."""
        return self[key] if key in self.keys() else default


# flux-limiter's name for the [rate_limit] defaults; LimitConfig is a superset of it.
RateLimitDefaults = LimitConfig


class NamedLimits(MutableMapping[str, LimitConfig]):
    """``FluxConfig.rate_limits``: the named limits, by name; every value read is a LimitConfig.

    A plain mapping as flux-limiter stored them (``{"requests": 5, "period": 60}``), like each
    ``[rate_limits.<name>]`` table of a file, is checked when it is set and takes what it omits
    from the *current* ``[rate_limit]`` (``base()``) each time it is read, as flux-limiter's
    ``from_config`` did: ``get_config().policy = "token_bucket"`` at import time applies to the
    presets that name no policy. A LimitConfig is complete and kept as given. Limiters already
    built keep their limit.
    """

    def __init__(
        self,
        limits: Mapping[str, LimitConfig | Mapping[str, Any]] | None = None,
        base: Callable[[], LimitConfig] = LimitConfig,
        path: Path | None = None,
    ) -> None:
        """Check and store ``limits``; ``base()`` fills what plain mappings omit; ``path`` is
        the file they came from, for error messages."""
        self._base = base
        self._path = path
        self._specs: dict[str, LimitConfig | dict[str, Any]] = {}
        if limits is None:
            return
        if not isinstance(limits, Mapping):
            raise ConfigError(
                f"expected a mapping of name to limit, got {type(limits).__name__}",
                key=SECTION_RATE_LIMITS,
            )
        if isinstance(limits, NamedLimits):
            limits = limits._specs  # keep tables as tables: they still follow [rate_limit]
        for name, limit in limits.items():
            self[name] = limit

    def _resolve(self, name: str, spec: LimitConfig | dict[str, Any]) -> LimitConfig:
        if isinstance(spec, LimitConfig):
            return spec
        return _limit(spec, self._path, (SECTION_RATE_LIMITS, name), self._base())

    def __getitem__(self, name: str) -> LimitConfig:
        return self._resolve(name, self._specs[name])

    def __setitem__(self, name: str, limit: LimitConfig | Mapping[str, Any]) -> None:
        key = _dotted(SECTION_RATE_LIMITS, str(name))
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(
                f"expected a non-empty limit name, got {name!r}", path=self._path, key=key
            )
        if isinstance(limit, Mapping):
            spec: LimitConfig | dict[str, Any] = dict(limit)
        elif isinstance(limit, LimitConfig):
            spec = limit
        else:
            raise ConfigError(
                f"expected a LimitConfig or a table of its keys, got {type(limit).__name__}",
                path=self._path,
                key=key,
            )
        self._resolve(name, spec)  # checked now, whatever [rate_limit] becomes later
        self._specs[name] = spec

    def __delitem__(self, name: str) -> None:
        del self._specs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        return f"NamedLimits({dict(self.items())!r})"


@dataclass(init=False)
class FluxConfig:
    """The whole validated configuration: one attribute per flux.toml section.

    ``path`` is the file it came from (``None``: built-in defaults). ``storage`` is the resolved
    store, ``"memory"``, ``"redis"`` or ``"shared"``; when constructing in code it defaults to
    ``flux.storage``, else ``"redis"`` when flux-limiter's flat Redis settings are given, else
    ``"memory"``.

    flux-limiter 0.1.19 compatibility: its flat names (``redis_host``, ``redis_port``,
    ``pool_size``, ``timeout_ms``, ``key_prefix``, ``log_file``, ``fail_silently``,
    ``console_logging``, ``jitter_enabled``, ``jitter_max_ms``, ``policy``,
    ``rate_limit_defaults``, ``analytics_enabled``, ``analytics_port``, ``analytics_stream``,
    ``analytics_retention``, ``analytics_sample_rate``) are constructor keywords and attributes
    that read and assign the section values. The configuration is mutable, as flux-limiter's
    was: ``get_config().fail_silently = False`` at import time applies to every limiter and
    decorator built afterwards (not to those already built). Every assignment is checked like
    the file; assigning a Redis setting to a configuration whose store was not chosen
    (``[flux] storage`` unset) selects Redis, as a ``[redis]`` section does. Assigning
    ``rate_limit_defaults`` sets requests, period and burst and keeps ``policy`` (a separate
    attribute in flux-limiter); named limits given as tables follow the current defaults.
    """

    redis: RedisConfig
    flux: FluxSettings
    analytics: AnalyticsConfig
    rate_limit: LimitConfig
    rate_limits: NamedLimits
    path: Path | None
    storage: str
    shared: SharedConfig
    # False when no storage was chosen anywhere (the memory store by default): a worker of a
    # pre-fork server then shares its limits with the other workers (flux._prefork).
    storage_configured: bool = field(default=True, init=False, compare=False, repr=False)

    def __init__(
        self,
        redis: RedisConfig | None = None,
        flux: FluxSettings | None = None,
        analytics: AnalyticsConfig | None = None,
        rate_limit: LimitConfig | None = None,
        rate_limits: Mapping[str, LimitConfig | Mapping[str, Any]] | None = None,
        path: str | PathLike[str] | None = None,
        storage: str | None = None,
        shared: SharedConfig | None = None,
        **flat: Any,
    ) -> None:
        """Build from sections and/or flux-limiter's flat keywords (applied on top of them).

        An unknown keyword raises TypeError; a bad value raises ConfigError naming it.
        """
        unknown = [name for name in flat if name not in FLAT_NAMES]
        if unknown:
            close = difflib.get_close_matches(unknown[0], [*FLAT_NAMES, *_SECTION_TYPES], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TypeError(f"FluxConfig() got an unexpected keyword argument {unknown[0]!r}{hint}")
        sections = {
            "redis": redis,
            "shared": shared,
            "flux": flux,
            "analytics": analytics,
            "rate_limit": rate_limit,
        }
        for name, value in sections.items():
            self._set_section(name, value if value is not None else _SECTION_TYPES[name]())
        object.__setattr__(self, "path", Path(path) if path is not None else None)
        self._assign(flat, select_redis=False)
        # Named limits last: tables among them are checked against the final [rate_limit].
        self.rate_limits = NamedLimits(rate_limits, self._default_limit, self.path)
        if storage is None:
            storage = self.flux.storage
        chosen = storage is not None
        if storage is None:
            redis_given = any(FLAT_NAMES[name][0] == REDIS_SECTION for name in flat)
            chosen = redis_given
            storage = STORAGE_REDIS if redis_given else STORAGE_MEMORY
        self.storage = storage
        object.__setattr__(self, "storage_configured", chosen)

    def __setattr__(self, name: str, value: Any) -> None:
        """Checks what is assigned: sections by type, ``storage`` and named limits by value."""
        if name in _SECTION_TYPES:
            self._set_section(name, value)
        elif name == "storage":
            if value not in STORAGES:
                expected = ", ".join(STORAGES)
                raise ConfigError(f"expected one of {expected}, got {value!r}", key="storage")
            object.__setattr__(self, name, value)
            object.__setattr__(self, "storage_configured", True)
        elif name == SECTION_RATE_LIMITS:
            object.__setattr__(self, name, NamedLimits(value, self._default_limit, self.path))
        else:
            object.__setattr__(self, name, value)

    def _default_limit(self) -> LimitConfig:
        """The current ``[rate_limit]``: what named limits given as tables inherit."""
        return self.rate_limit

    def _set_section(self, name: str, value: Any) -> None:
        expected = _SECTION_TYPES[name]
        if not isinstance(value, expected):
            raise ConfigError(
                f"expected a {expected.__name__}, got {type(value).__name__}", key=name
            )
        object.__setattr__(self, name, value)

    def _assign(self, changes: Mapping[str, Any], *, select_redis: bool = True) -> None:
        """Apply flat flux-limiter assignments: each section is rebuilt (and so re-checked)
        once; a failure changes nothing and names the flat attribute."""
        rebuilt: dict[str, Any] = {}
        by_section: dict[str, dict[str, Any]] = {}
        for name, value in changes.items():
            section, key = FLAT_NAMES[name]
            if key is not None:
                by_section.setdefault(section, {})[key] = value
                continue
            # rate_limit_defaults: flux-limiter's RateLimitDefaults held requests, period and
            # burst only; its policy was a separate attribute, so the current one is kept.
            if not isinstance(value, LimitConfig):
                raise ConfigError(
                    "expected a RateLimitDefaults (flux.config.LimitConfig), "
                    f"got {type(value).__name__}",
                    key=name,
                )
            defaults = {"requests": value.requests, "period": value.period, "burst": value.burst}
            by_section.setdefault(section, {}).update(defaults)
        for section, values in by_section.items():
            try:
                rebuilt[section] = replace(getattr(self, section), **values)
            except ConfigError as exc:
                raise ConfigError(exc.reason, key=flat_name(exc.key) or exc.key) from None
        for section, value in rebuilt.items():
            self._set_section(section, value)
        if select_redis and REDIS_SECTION in by_section and self.flux.storage is None:
            self.storage = STORAGE_REDIS

    def limit(self, name: str | None = None) -> LimitConfig:
        """The named limit ``[rate_limits.<name>]``; ``None`` gives the default ``[rate_limit]``.

        Raises ConfigError naming the unknown limit and listing the known ones.
        """
        if name is None:
            return self.rate_limit
        try:
            return self.rate_limits[name]
        except KeyError:
            known = ", ".join(sorted(self.rate_limits)) or "none defined"
            where = str(self.path) if self.path is not None else "built-in defaults"
            raise ConfigError(
                f'unknown rate limit "{name}" (known in {where}: {known})',
                path=self.path,
                key=_dotted(SECTION_RATE_LIMITS, name),
            ) from None

    # --- flux-limiter 0.1.19 flat names, kept so its users' code runs unchanged -------------
    redis_host = Flat[str]("flux-limiter name for ``redis.host``.")
    redis_port = Flat[int]("flux-limiter name for ``redis.port``.")
    pool_size = Flat[int]("flux-limiter name for ``redis.pool_size``.")
    timeout_ms = Flat[int]("flux-limiter name for ``redis.timeout_ms``.")
    key_prefix = Flat[str]("flux-limiter name for ``flux.key_prefix``.")
    log_file = Flat[Optional[str]]("flux-limiter name for ``flux.log_file``.")
    fail_silently = Flat[bool]("flux-limiter name for ``flux.fail_silently``.")
    console_logging = Flat[bool]("flux-limiter name for ``flux.console_logging``.")
    jitter_enabled = Flat[bool]("flux-limiter name for ``flux.jitter_enabled``.")
    jitter_max_ms = Flat[int]("flux-limiter name for ``flux.jitter_max_ms``.")
    policy = Flat[RateLimitPolicy]("flux-limiter name for ``rate_limit.policy``.")
    rate_limit_defaults = Flat[LimitConfig]("flux-limiter name for ``rate_limit``.")
    analytics_enabled = Flat[bool]("flux-limiter name for ``analytics.enabled``.")
    analytics_port = Flat[int]("flux-limiter name for ``analytics.port``.")
    analytics_stream = Flat[str]("flux-limiter name for ``analytics.stream``.")
    analytics_retention = Flat[int]("flux-limiter name for ``analytics.retention``.")
    analytics_sample_rate = Flat[float]("flux-limiter name for ``analytics.sample_rate``.")


_SECTION_TYPES: dict[str, type] = {
    SECTION_REDIS: RedisConfig,
    SECTION_SHARED: SharedConfig,
    SECTION_FLUX: FluxSettings,
    SECTION_ANALYTICS: AnalyticsConfig,
    SECTION_RATE_LIMIT: LimitConfig,
}

# --- loading ---------------------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _dotted(*parts: str) -> str:
    """A dotted TOML key, quoting parts that are not bare keys (``rate_limits."a b".period``)."""
    return ".".join(p if _BARE_KEY.fullmatch(p) else f'"{p}"' for p in parts)


def _unknown(name: str, known: list[str] | tuple[str, ...], what: str) -> str:
    """The message for an unknown section or key, with a close match when there is one."""
    message = f"unknown {what}; expected one of {', '.join(known)}"
    close = difflib.get_close_matches(name, known, n=1)
    return f"{message} (did you mean {close[0]!r}?)" if close else message


def _table(value: Any, path: Path | None, key: str, expected: str) -> dict[str, Any]:
    """``value`` if it is a TOML table, else a ConfigError at ``key``."""
    if not isinstance(value, dict):
        raise ConfigError(f"expected {expected}, got {checks.show(value)}", path=path, key=key)
    return value


def _check_keys(
    cls: type, table: dict[str, Any], path: Path | None, section: tuple[str, ...]
) -> dict[str, Any]:
    """Check every key of the table at ``section`` against ``cls``'s fields; normalise them."""
    known = {f.name: f.metadata[_CHECK] for f in fields(cls) if _CHECK in f.metadata}
    kwargs: dict[str, Any] = {}
    for name, raw in table.items():
        key = _dotted(*section, name)
        check = known.get(name)
        if check is None:
            raise ConfigError(_unknown(name, list(known), "key"), path=path, key=key)
        try:
            kwargs[name] = check(raw)
        except checks.Invalid as exc:
            raise ConfigError(exc.describe(), path=path, key=key) from None
    return kwargs


def _construct(cls: type, kwargs: dict[str, Any], path: Path | None) -> Any:
    """``cls(**kwargs)``, adding the file path to cross-key errors raised by ``__post_init__``."""
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(exc.reason, path=path, key=exc.key) from None


def _section(cls: type, data: dict[str, Any], path: Path | None, name: str) -> Any:
    """Build the dataclass for one simple section (absent section: all defaults)."""
    table = _table(data.get(name, {}), path, name, f"a table ([{name}])")
    return _construct(cls, _check_keys(cls, table, path, (name,)), path)


def _limit(
    table: dict[str, Any], path: Path | None, parts: tuple[str, ...], base: LimitConfig | None
) -> LimitConfig:
    """Build one limit; named limits (``base`` given) inherit what they omit (module doc)."""
    kwargs = _check_keys(LimitConfig, table, path, parts)
    spelt = [k for k in ("requests", "period") if k in table]
    if "limit" in table and spelt:
        raise ConfigError(
            f"expected the quota either as limit = {table['limit']!r} or as requests and "
            "period, not both",
            path=path,
            key=_dotted(*parts, spelt[0]),
        )
    if base is not None:
        # A named limit that states no quota of its own inherits [rate_limit]'s, rate string
        # and all; one that states any part of it starts from requests/period.
        if base.limit is not None and "limit" not in table and not spelt:
            kwargs["limit"] = base.limit
        kwargs.setdefault("requests", base.requests)
        kwargs.setdefault("period", base.period)
        kwargs.setdefault("policy", base.policy)
        kwargs.setdefault("fail_silently", base.fail_silently)
        if "burst" not in table and "requests" not in table and "limit" not in table:
            kwargs["burst"] = base.burst
    if "burst" in table and len(parse_rates(kwargs.get("limit") or "1/s")) > 1:
        raise ConfigError(
            f"expected no burst: it applies to one rate, and {kwargs['limit']!r} has several",
            path=path,
            key=_dotted(*parts, "burst"),
        )
    limit: LimitConfig = _construct(LimitConfig, kwargs, path)
    _check_quota(limit, path, parts)
    return limit


def _check_quota(limit: LimitConfig, path: Path | None, parts: tuple[str, ...]) -> None:
    """Refuse, naming the file and the table, a quota the core would refuse at the first
    limiter (``period = 1e-9``: finer than a nanosecond per request; ``period = 1e12``: a
    window too long to count in): each value alone may be in range and the whole not."""
    try:  # the native module: the core alone knows what it can count
        _flux.Limiter(limit.requests, limit.period, burst=limit.burst, policy=str(limit.policy))
        for rate in limit.rates[1:]:
            _flux.Limiter(rate.requests, rate.period, policy=str(limit.policy))
    except ValueError as exc:
        raise ConfigError(str(exc), path=path, key=_dotted(*parts)) from None


def _redis_section(data: dict[str, Any], path: Path | None, env_url: str | None) -> RedisConfig:
    """``[redis]``, with ``$FLUX_REDIS_URL`` replacing url, host, port, password and db."""
    table = _table(data.get(SECTION_REDIS, {}), path, SECTION_REDIS, "a table ([redis])")
    if "url" in table:
        clash = [k for k in URL_REPLACES if k in table]
        if clash:
            raise ConfigError(
                f"expected either url or {'/'.join(URL_REPLACES)}, not both "
                f"(this file also sets {', '.join(clash)})",
                path=path,
                key=_dotted(SECTION_REDIS, "url"),
            )
    kwargs = _check_keys(RedisConfig, table, path, (SECTION_REDIS,))
    if env_url is not None:
        try:
            kwargs["url"] = checks.redis_url(env_url)
        except checks.Invalid as exc:
            raise ConfigError(exc.describe(), key=REDIS_URL_ENV) from None
        for replaced in URL_REPLACES:
            kwargs.pop(replaced, None)
    return _construct(RedisConfig, kwargs, path)


def _build(data: dict[str, Any], path: Path | None, environ: Mapping[str, str]) -> FluxConfig:
    """Validate a parsed TOML document (plus the environment) into a FluxConfig."""
    for name in data:
        if name not in SECTIONS:
            raise ConfigError(_unknown(name, SECTIONS, "section"), path=path, key=_dotted(name))
    env_url = environ.get(REDIS_URL_ENV) or None
    redis = _redis_section(data, path, env_url)
    flux = _section(FluxSettings, data, path, SECTION_FLUX)
    analytics = _section(AnalyticsConfig, data, path, SECTION_ANALYTICS)
    default_table = _table(
        data.get(SECTION_RATE_LIMIT, {}), path, SECTION_RATE_LIMIT, "a table ([rate_limit])"
    )
    default = _limit(default_table, path, (SECTION_RATE_LIMIT,), None)
    named_tables = _table(
        data.get(SECTION_RATE_LIMITS, {}),
        path,
        SECTION_RATE_LIMITS,
        "a table of named limits ([rate_limits.<name>])",
    )
    # Tables stay tables: FluxConfig checks them now, and each read inherits the [rate_limit]
    # of that moment (see NamedLimits), so code that changes the defaults reaches them too.
    named: dict[str, dict[str, Any]] = {}
    for name, table in named_tables.items():
        key = _dotted(SECTION_RATE_LIMITS, name)
        if not name.strip():
            raise ConfigError("expected a non-empty limit name", path=path, key=key)
        named[name] = _table(
            table, path, key, f"a table ([{key}]) with requests, period, burst, policy"
        )
    shared = _section(SharedConfig, data, path, SECTION_SHARED)
    env_storage = environ.get(STORAGE_ENV) or None
    storage: str | None
    if env_storage is not None:
        try:
            storage = checks.choice(STORAGES)(env_storage)
        except checks.Invalid as exc:
            raise ConfigError(exc.describe(), key=STORAGE_ENV) from None
    elif flux.storage is not None:
        storage = flux.storage
    elif SECTION_REDIS in data or env_url is not None:
        storage = STORAGE_REDIS
    else:
        storage = None  # the memory store, unless this is a pre-fork server's worker
    return FluxConfig(redis, flux, analytics, default, named, path, storage, shared)


def find_config_file(path: str | PathLike[str] | None = None) -> Path | None:
    """The file :func:`load_config` would read, or ``None`` for built-in defaults.

    An explicit ``path`` or ``$FLUX_CONFIG`` is returned whether or not it exists (loading it
    then reports a missing file); the ``./flux.toml`` and ``./config/flux.toml`` candidates are
    returned only if they are files.
    """
    if path is not None:
        return Path(path).absolute()
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env).absolute()
    for candidate in SEARCH_PATHS:
        found = Path.cwd() / candidate
        if found.is_file():
            return found
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    """Parse ``path``; every way of failing becomes a ConfigError naming it."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError("no such file", path=path) from None
    except IsADirectoryError:
        raise ConfigError("expected a file, got a directory", path=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", path=path) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text: {exc}", path=path) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", path=path) from None


def load_config(
    path: str | PathLike[str] | None = None,
    *,
    config_path: str | PathLike[str] | None = None,
) -> FluxConfig:
    """Find, read and validate flux.toml (search order in the module doc). Never cached.

    ``config_path`` is flux-limiter's name for ``path``. Raises ConfigError for a missing
    ``path`` or any invalid content; a missing ``$FLUX_CONFIG`` file only logs a warning.
    """
    if config_path is not None:
        if path is not None:
            raise TypeError("load_config() takes path or config_path, not both")
        path = config_path
    found = find_config_file(path)
    if path is None and found is not None and not found.exists() and os.environ.get(CONFIG_ENV):
        logger.warning(
            "$%s names %s, which does not exist: using the built-in defaults", CONFIG_ENV, found
        )
        found = None
    data = _read_toml(found) if found is not None else {}
    return _build(data, found, os.environ)


_lock = threading.Lock()
_cached: FluxConfig | None = None


def get_config() -> FluxConfig:
    """The process-wide configuration, loaded on first use and then cached (thread-safe).

    A failed load raises and caches nothing, so the next call tries again. The object is
    mutable, as flux-limiter's was: ``get_config().fail_silently = False`` before views and
    limiters are declared applies to them (each assignment is checked like the file).
    """
    global _cached
    config = _cached
    if config is not None:
        return config
    with _lock:
        if _cached is None:
            _cached = load_config()
        return _cached


def reload_config(path: str | PathLike[str] | None = None) -> FluxConfig:
    """Load the configuration again (from ``path`` if given) and make it the cached one.

    If loading fails the previous configuration stays cached and the error propagates.
    Objects built from the old configuration (limiters already created) keep it.
    """
    global _cached
    config = load_config(path)
    with _lock:
        _cached = config
    return config
