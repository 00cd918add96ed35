"""flux-limiter 0.1.19's flat ``FluxConfig`` attribute names, mapped onto flux's sections.

flux-limiter kept its whole configuration as one flat, mutable dataclass (``redis_port``,
``fail_silently``, ``analytics_stream``, ...); flux keeps one validated dataclass per flux.toml
section. :data:`FLAT_NAMES` says where each flat name lives, and :class:`Flat` is the
descriptor that reads it there and writes it back through ``FluxConfig._assign``, which
re-validates the section, so ``get_config().fail_silently = False`` is checked like the file.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar, overload

__all__ = ["FLAT_NAMES", "REDIS_SECTION", "Flat", "flat_name"]

REDIS_SECTION = "redis"

# flux-limiter name -> (section attribute of FluxConfig, key in it). A key of None stands for
# the whole section (flux-limiter's `rate_limit_defaults` is flux's `[rate_limit]`).
FLAT_NAMES: dict[str, tuple[str, str | None]] = {
    "redis_host": (REDIS_SECTION, "host"),
    "redis_port": (REDIS_SECTION, "port"),
    "pool_size": (REDIS_SECTION, "pool_size"),
    "timeout_ms": (REDIS_SECTION, "timeout_ms"),
    "key_prefix": ("flux", "key_prefix"),
    "log_file": ("flux", "log_file"),
    "fail_silently": ("flux", "fail_silently"),
    "console_logging": ("flux", "console_logging"),
    "jitter_enabled": ("flux", "jitter_enabled"),
    "jitter_max_ms": ("flux", "jitter_max_ms"),
    "policy": ("rate_limit", "policy"),
    "rate_limit_defaults": ("rate_limit", None),
    "analytics_enabled": ("analytics", "enabled"),
    "analytics_port": ("analytics", "port"),
    "analytics_stream": ("analytics", "stream"),
    "analytics_retention": ("analytics", "retention"),
    "analytics_sample_rate": ("analytics", "sample_rate"),
}

_BY_PLACE = {place: name for name, place in FLAT_NAMES.items()}


def flat_name(dotted: str | None) -> str | None:
    """The flat name of a dotted section key (``"redis.port"`` -> ``"redis_port"``), if any."""
    if dotted is None or "." not in dotted:
        return None
    section, _, key = dotted.partition(".")
    return _BY_PLACE.get((section, key))


T = TypeVar("T")


class Flat(Generic[T]):
    """A flat flux-limiter attribute of ``FluxConfig``: reads the section's value, and an
    assignment goes through the owner's ``_assign`` (validated, Redis settings select Redis).
    """

    name: str

    def __init__(self, doc: str) -> None:
        """``doc`` becomes the attribute's docstring."""
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        if name not in FLAT_NAMES:
            raise TypeError(f"{name!r} is not a flux-limiter FluxConfig attribute")
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Flat[T]: ...

    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...

    def __get__(self, obj: object | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        section_name, key = FLAT_NAMES[self.name]
        section = getattr(obj, section_name)
        return section if key is None else getattr(section, key)

    def __set__(self, obj: Any, value: T) -> None:
        obj._assign({self.name: value})
