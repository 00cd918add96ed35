"""The process-wide shared-memory regions behind ``RateLimiter`` when ``storage = "shared"``.

Every limiter built from the same ``[shared]`` section (and ``[flux] key_prefix``, which names
the default region) uses one :class:`flux._flux.SharedRegion` per process: one mapping of the
region file, however many limits there are. A forked child (gunicorn workers) keeps its
parent's mapping, which is what sharing needs: no reopening after a fork.
"""

from __future__ import annotations

import threading
from pathlib import Path

from flux import _flux
from flux.config import FluxConfig

__all__ = ["clear_regions", "open_regions", "region_path", "shared_region"]

_RegionKey = tuple[Path, "int | None"]

_lock = threading.Lock()
_regions: dict[_RegionKey, _flux.SharedRegion] = {}


def region_path(config: FluxConfig) -> Path:
    """The region file for ``config``: ``[shared] path``, else the default for the key prefix."""
    if config.shared.path is not None:
        return Path(config.shared.path)
    return Path(_flux.default_shared_path(config.flux.key_prefix))


def shared_region(config: FluxConfig) -> _flux.SharedRegion:
    """The region for ``config`` (opened, or created, on first use; then shared by the process).

    Raises ``OSError`` naming the path and what to do when the region cannot be created,
    opened or mapped, or is not a usable region (another flux version's layout, a truncated
    or corrupted file, another ``max_keys``).
    """
    key: _RegionKey = (region_path(config), config.shared.max_keys)
    region = _regions.get(key)
    if region is not None:
        return region
    with _lock:
        region = _regions.get(key)
        if region is None:
            region = _flux.SharedRegion(key[0], max_keys=key[1])
            _regions[key] = region
        return region


def open_regions() -> list[_flux.SharedRegion]:
    """The regions this process has opened (for ``/metrics``)."""
    with _lock:
        return list(_regions.values())


def clear_regions() -> None:
    """Forget the process's regions (tests): the next limiter opens its region again."""
    with _lock:
        _regions.clear()
