"""Type stubs for the native module flux._flux (checked by mypy.stubtest in `make lint`)."""

from collections.abc import Awaitable
from os import PathLike
from pathlib import Path
from typing import Any, Final, Literal, final, overload

from typing_extensions import disjoint_base

__all__ = [
    "ALGORITHMS",
    "Limiter",
    "ManualClock",
    "RateLimitResult",
    "RedisStore",
    "SharedRegion",
    "__version__",
    "ahit_many",
    "default_shared_path",
    "hit_many",
]

__version__: Final[str]
ALGORITHMS: Final[list[str]]

@disjoint_base
class RateLimitResult:
    """The outcome of one hit (or peek). Times are float seconds."""

    @property
    def allowed(self) -> bool: ...
    @property
    def remaining(self) -> int: ...
    @property
    def reset_after(self) -> float: ...
    @property
    def retry_after(self) -> float: ...
    @property
    def limit(self) -> int: ...
    @property
    def usage(self) -> int: ...
    @property
    def source(self) -> Literal["memory", "redis", "deny_cache", "fail_open"]: ...
    @property
    def fail_open(self) -> bool: ...
    def __new__(
        cls,
        allowed: bool,
        remaining: int = 0,
        reset_after: float | None = 0.0,
        retry_after: float | None = 0.0,
        limit: int = 0,
        *,
        source: str = "memory",
    ) -> RateLimitResult: ...
    def to_headers(self) -> dict[str, str]: ...
    @overload
    def header_items(
        self, quoted_name: str, window: int, raw: Literal[False] = False
    ) -> list[tuple[str, str]]: ...
    @overload
    def header_items(
        self, quoted_name: str, window: int, raw: Literal[True]
    ) -> list[tuple[bytes, bytes]]: ...
    @overload
    def header_items(
        self, quoted_name: str, window: int, raw: bool
    ) -> list[tuple[str, str]] | list[tuple[bytes, bytes]]: ...
    def __bool__(self) -> bool: ...
    def __eq__(self, value: object, /) -> bool: ...

@final
class ManualClock:
    """A clock that moves only when told to (seconds since the epoch)."""

    def __new__(cls, start: float | None = None) -> ManualClock: ...
    def advance(self, seconds: float) -> None: ...
    def set(self, seconds: float) -> None: ...
    def now(self) -> float: ...

@final
class RedisStore:
    """A connection to Redis shared by any number of limiters."""

    def __new__(
        cls,
        url: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 6379,
        pool_size: int = 5,
        timeout_ms: int = 200,
        cluster: bool = False,
        nodes: list[str] | None = None,
        username: str | None = None,
        password: str | None = None,
        db: int | None = None,
        key_prefix: str = "flux:",
        fail_silently: bool = True,
        breaker_threshold: int = 3,
        breaker_cooldown_ms: int = 1000,
        deny_cache_size: int = 4096,
        async_workers: int = 2,
        direct_callers: int | None = None,
    ) -> RedisStore: ...
    def ping(self) -> None: ...
    def load_scripts(self) -> int: ...
    def stats(self) -> dict[str, int | str]: ...
    @property
    def breaker_state(self) -> Literal["closed", "open"]: ...
    @property
    def target(self) -> str: ...
    @property
    def key_prefix(self) -> str: ...
    @property
    def fail_silently(self) -> bool: ...
    @property
    def timeout_ms(self) -> int: ...

@final
class SharedRegion:
    """A shared-memory region: limiters of every process that opens its path share state."""

    def __new__(
        cls,
        path: str | PathLike[str] | None = None,
        *,
        max_keys: int | None = None,
        key_prefix: str = "flux:",
    ) -> SharedRegion: ...
    @property
    def path(self) -> Path: ...
    def stats(self) -> dict[str, Any]: ...
    def clear(self) -> int: ...

def default_shared_path(key_prefix: str) -> Path: ...

@disjoint_base
class Limiter:
    """One rate limit, on the embedded store, a RedisStore or a SharedRegion."""

    def __new__(
        cls,
        requests: int,
        period: float,
        *,
        burst: int | None = None,
        policy: str = "gcra",
        max_keys: int | None = None,
        clock: ManualClock | None = None,
        prefix: str = "",
        store: RedisStore | None = None,
        fail_silently: bool | None = None,
        region: SharedRegion | None = None,
    ) -> Limiter: ...
    def hit(self, key: str, endpoint: object | None = None, cost: int = 1) -> RateLimitResult: ...
    def ahit(
        self, key: str, endpoint: object | None = None, cost: int = 1
    ) -> Awaitable[RateLimitResult]: ...
    @staticmethod
    def hit_many(items: list[tuple[Limiter, str, int]]) -> list[RateLimitResult]: ...
    @staticmethod
    def ahit_many(items: list[tuple[Limiter, str, int]]) -> Awaitable[list[RateLimitResult]]: ...
    def peek(self, key: str) -> RateLimitResult: ...
    def refund(self, key: str, cost: int = 1) -> RateLimitResult: ...
    def arefund(self, key: str, cost: int = 1) -> Awaitable[RateLimitResult]: ...
    def reset(self, key: str) -> None: ...
    def sweep(self) -> int: ...
    def __len__(self) -> int: ...
    @property
    def requests(self) -> int: ...
    @property
    def period(self) -> float: ...
    @property
    def burst(self) -> int: ...
    @property
    def policy(self) -> str: ...
    @property
    def limit(self) -> int: ...
    @property
    def prefix(self) -> str: ...
    @property
    def store(self) -> RedisStore | None: ...
    @property
    def fail_silently(self) -> bool | None: ...
    @property
    def region(self) -> SharedRegion | None: ...

def hit_many(items: list[tuple[Limiter, str, int]]) -> list[RateLimitResult]: ...
def ahit_many(items: list[tuple[Limiter, str, int]]) -> Awaitable[list[RateLimitResult]]: ...
