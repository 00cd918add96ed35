"""flux.toml: where it is found, what it may contain, and the validated configuration.

Search order (the first that applies wins):

1. the path passed to :func:`load_config` / :func:`reload_config`;
2. ``$FLUX_CONFIG``;
3. ``./flux.toml``, then ``./config/flux.toml`` (relative to the current directory);
4. none found: built-in defaults (embedded memory store).

A path given explicitly (1 or 2) must exist. Sections: ``[redis]``, ``[shared]``, ``[flux]``,
``[analytics]``, ``[rate_limit]`` (the default limit) and ``[rate_limits.<name>]`` (named
limits). Every value is checked: a malformed file, an unknown section or key, a wrong type
(``true`` is not a number) or an out-of-range value raises
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
import os
import re
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import Enum
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit, urlunsplit

from flux import _checks as checks
from flux.exceptions import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - pyproject depends on tomli below 3.11
    import tomli as tomllib

__all__ = [
    "AnalyticsConfig",
    "FluxConfig",
    "FluxSettings",
    "LimitConfig",
    "RateLimitDefaults",
    "RateLimitPolicy",
    "RedisConfig",
    "SharedConfig",
    "find_config_file",
    "get_config",
    "load_config",
    "reload_config",
]

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
FORWARDED_HEADERS = ("X-Forwarded-For", "Forwarded")

# Keys of [redis] that a `url` replaces; giving both in one file is ambiguous, so it is an error.
URL_REPLACES = ("host", "port", "password", "db")

# Key names are the dataclass field names below; each checked field carries its checker here.
_CHECK = "flux.check"


def _check(check: checks.Check) -> dict[str, checks.Check]:
    """Field metadata marking a config key and the checker its values must pass."""
    return {_CHECK: check}


class RateLimitPolicy(str, Enum):
    """Rate limiting algorithms (DESIGN §3). Values are the names used in flux.toml.

    Lookup ignores case (``RateLimitPolicy("GCRA")``, as flux-limiter lower-cased its input) and
    accepts flux-limiter's Lua name ``"fcfs"`` for ``fixed_window``.
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
        name = value.strip().lower().replace("-", "_")
        name = _POLICY_ALIASES.get(name, name)
        return next((member for member in cls if member.value == name), None)


_POLICY_ALIASES = {"fcfs": "fixed_window"}


def _policy(value: Any) -> RateLimitPolicy:
    """Checker for ``policy`` keys."""
    expected = "one of " + ", ".join(f'"{p.value}"' for p in RateLimitPolicy)
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
            parts = urlsplit(self.url)
            if not redact or parts.password is None:
                return self.url
            netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
            return urlunsplit(parts._replace(netloc=netloc))
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

    def __post_init__(self) -> None:
        _settle(self, self._SECTION)
        if self.burst is None:
            object.__setattr__(self, "burst", self.requests)


# flux-limiter's name for the [rate_limit] defaults; LimitConfig is a superset of it.
RateLimitDefaults = LimitConfig


@dataclass(frozen=True)
class FluxConfig:
    """The whole validated configuration: one attribute per flux.toml section.

    ``path`` is the file it came from (``None``: built-in defaults). ``storage`` is the resolved
    store, ``"memory"``, ``"redis"`` or ``"shared"``; when constructing in code it defaults to
    ``flux.storage`` or ``"memory"``. ``rate_limits`` is read-only. The flat attribute names of
    flux-limiter's FluxConfig (``redis_host``, ``analytics_port``, ...) remain as properties.
    """

    redis: RedisConfig = field(default_factory=RedisConfig)
    flux: FluxSettings = field(default_factory=FluxSettings)
    analytics: AnalyticsConfig = field(default_factory=AnalyticsConfig)
    rate_limit: LimitConfig = field(default_factory=LimitConfig)
    rate_limits: Mapping[str, LimitConfig] = field(default_factory=dict)
    path: Path | None = None
    storage: str | None = None
    shared: SharedConfig = field(default_factory=SharedConfig)
    # False when no storage was configured anywhere (the memory store by default): a worker of
    # a pre-fork server then shares its limits with the other workers (flux._prefork).
    storage_configured: bool = field(default=True, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name, limit in self.rate_limits.items():
            if not isinstance(limit, LimitConfig):
                raise ConfigError(
                    f"expected a LimitConfig, got {type(limit).__name__}",
                    key=_dotted(SECTION_RATE_LIMITS, name),
                )
        object.__setattr__(self, "rate_limits", MappingProxyType(dict(self.rate_limits)))
        storage = self.storage if self.storage is not None else self.flux.storage
        object.__setattr__(self, "storage_configured", storage is not None)
        storage = storage if storage is not None else STORAGE_MEMORY
        if storage not in STORAGES:
            expected = ", ".join(STORAGES)
            raise ConfigError(f"expected one of {expected}, got {storage!r}", key="storage")
        object.__setattr__(self, "storage", storage)

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
    @property
    def redis_host(self) -> str:
        """flux-limiter name for ``redis.host``."""
        return self.redis.host

    @property
    def redis_port(self) -> int:
        """flux-limiter name for ``redis.port``."""
        return self.redis.port

    @property
    def pool_size(self) -> int:
        """flux-limiter name for ``redis.pool_size``."""
        return self.redis.pool_size

    @property
    def timeout_ms(self) -> int:
        """flux-limiter name for ``redis.timeout_ms``."""
        return self.redis.timeout_ms

    @property
    def key_prefix(self) -> str:
        """flux-limiter name for ``flux.key_prefix``."""
        return self.flux.key_prefix

    @property
    def log_file(self) -> str | None:
        """flux-limiter name for ``flux.log_file``."""
        return self.flux.log_file

    @property
    def fail_silently(self) -> bool:
        """flux-limiter name for ``flux.fail_silently``."""
        return self.flux.fail_silently

    @property
    def console_logging(self) -> bool:
        """flux-limiter name for ``flux.console_logging``."""
        return self.flux.console_logging

    @property
    def jitter_enabled(self) -> bool:
        """flux-limiter name for ``flux.jitter_enabled``."""
        return self.flux.jitter_enabled

    @property
    def jitter_max_ms(self) -> int:
        """flux-limiter name for ``flux.jitter_max_ms``."""
        return self.flux.jitter_max_ms

    @property
    def policy(self) -> RateLimitPolicy:
        """flux-limiter name for ``rate_limit.policy``."""
        return self.rate_limit.policy

    @property
    def rate_limit_defaults(self) -> LimitConfig:
        """flux-limiter name for ``rate_limit``."""
        return self.rate_limit

    @property
    def analytics_enabled(self) -> bool:
        """flux-limiter name for ``analytics.enabled``."""
        return self.analytics.enabled

    @property
    def analytics_port(self) -> int:
        """flux-limiter name for ``analytics.port``."""
        return self.analytics.port

    @property
    def analytics_stream(self) -> str:
        """flux-limiter name for ``analytics.stream``."""
        return self.analytics.stream

    @property
    def analytics_retention(self) -> int:
        """flux-limiter name for ``analytics.retention``."""
        return self.analytics.retention

    @property
    def analytics_sample_rate(self) -> float:
        """flux-limiter name for ``analytics.sample_rate``."""
        return self.analytics.sample_rate


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
    if base is not None:
        kwargs.setdefault("requests", base.requests)
        kwargs.setdefault("period", base.period)
        kwargs.setdefault("policy", base.policy)
        kwargs.setdefault("fail_silently", base.fail_silently)
        if "burst" not in table and "requests" not in table:
            kwargs["burst"] = base.burst
    return _construct(LimitConfig, kwargs, path)


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
    named: dict[str, LimitConfig] = {}
    for name, table in named_tables.items():
        key = _dotted(SECTION_RATE_LIMITS, name)
        if not name.strip():
            raise ConfigError("expected a non-empty limit name", path=path, key=key)
        table = _table(table, path, key, f"a table ([{key}]) with requests, period, burst, policy")
        named[name] = _limit(table, path, (SECTION_RATE_LIMITS, name), default)
    shared = _section(SharedConfig, data, path, SECTION_SHARED)
    env_storage = environ.get(STORAGE_ENV) or None
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


def load_config(path: str | PathLike[str] | None = None) -> FluxConfig:
    """Find, read and validate flux.toml (search order in the module doc). Never cached.

    Raises ConfigError for a missing explicit file or any invalid content.
    """
    found = find_config_file(path)
    data = _read_toml(found) if found is not None else {}
    return _build(data, found, os.environ)


_lock = threading.Lock()
_cached: FluxConfig | None = None


def get_config() -> FluxConfig:
    """The process-wide configuration, loaded on first use and then cached (thread-safe).

    A failed load raises and caches nothing, so the next call tries again.
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
