"""Analytics summed over every process of a shared-memory region, without Redis.

:class:`SharedSink` keeps this process's running totals (like
:class:`~flux.analytics.sinks.MemorySink`) and publishes them, after every flush, as this
process's record in the region's analytics file (:mod:`flux.analytics.area`).
:class:`SharedReader` sums the records: the processes alive now, and those gone (folded into
one record, so a restarted worker never takes its predecessor's counts away).

A record is the process's whole running total, compressed JSON, not a delta: publishing it
again is harmless, losing one publication (the process killed meanwhile) loses only the events
of that flush, and a reader never has to know what it read before. What a record keeps is
bounded to fit ``COPY_BYTES``: every ``(limit, endpoint)`` count and latency histogram in full,
the ``PUBLISHED_TOP`` most blocked identities of each limit (fewer when the record would not
fit), the recent blocks and the last minutes of per-second counts. Summed per identity across
processes, "top blocked" is exact for identities each process ranks in its own top, an
estimate for the long tail.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from flux.analytics.aggregate import (
    HISTORY_SECONDS,
    RECENT_BLOCKS,
    Aggregate,
    Counts,
    RawEvent,
    Snapshot,
)
from flux.analytics.area import COPY_BYTES, SLOTS, Area, Owner, area_path, me, open_area

__all__ = ["PUBLISHED_TOP", "SharedReader", "SharedSink", "decode", "encode", "merge_payloads"]

logger = logging.getLogger("flux.analytics")

# Blocked identities each process publishes per limit (its most blocked ones).
PUBLISHED_TOP = 200
# Fewer when the record would not fit: then none, then no recent blocks either.
_TOPS = (PUBLISHED_TOP, 50, 10, 0)
# Seconds of per-second counts published (the timeline shows one minute, settled).
_SECONDS_KEPT = 2 * HISTORY_SECONDS
# Dead processes' records are folded into the retired record at most this often.
FOLD_INTERVAL = 5.0
SOURCE = "shared"


# --- the payload: one process's totals ---------------------------------------------------------


def _top(identities: dict[str, float], n: int) -> list[list[Any]]:
    rows = sorted(identities.items(), key=lambda item: (-item[1], item[0]))[:n]
    return [[identity, count] for identity, count in rows]


def _document(aggregate: Aggregate, info: dict[str, Any], top: int, recent: bool) -> bytes:
    since = int(time.time()) - _SECONDS_KEPT
    document = {
        "c": [
            [
                limit,
                endpoint,
                c.allowed,
                c.blocked,
                c.errors,
                c.latency_sum,
                c.latency_count,
                c.buckets,
                c.limit,
            ]
            for (limit, endpoint), c in aggregate.counts.items()
        ],
        "b": {limit: _top(ids, top) for limit, ids in aggregate.blocked_by.items() if top},
        "r": list(aggregate.recent) if recent else [],
        "s": [[s, a, b] for s, (a, b) in aggregate.per_second.items() if s >= since],
        "i": info,
    }
    return zlib.compress(json.dumps(document, separators=(",", ":")).encode(), 1)


def encode(aggregate: Aggregate, info: dict[str, Any], budget: int = COPY_BYTES) -> bytes | None:
    """``aggregate`` and ``info`` (dropped events, breaker state) as a record of at most
    ``budget`` bytes, with fewer identities and recent blocks as needed; ``None`` when even the
    counts alone do not fit (thousands of endpoints)."""
    for recent in (True, False):
        for top in _TOPS:
            payload = _document(aggregate, info, top, recent)
            if len(payload) <= budget:
                return payload
    return None


def decode(payload: bytes) -> tuple[Aggregate, dict[str, Any]]:
    """A record back as ``(aggregate, info)``; an unreadable record is empty."""
    aggregate = Aggregate()
    try:
        document = json.loads(zlib.decompress(payload))
        for limit, endpoint, allowed, blocked, errors, lsum, lcount, buckets, quota in document[
            "c"
        ]:
            counts = aggregate.counts_for(limit, endpoint)
            counts.merge(
                Counts(allowed, blocked, errors, lsum, lcount, [float(b) for b in buckets], quota)
            )
        for limit, rows in document["b"].items():
            aggregate.blocked_by[limit] = {identity: float(count) for identity, count in rows}
        aggregate.recent.extend(document["r"])
        aggregate.per_second = {int(s): [float(a), float(b)] for s, a, b in document["s"]}
        info = dict(document.get("i") or {})
    except (ValueError, TypeError, KeyError, zlib.error):
        return Aggregate(), {}
    return aggregate, info


def _sum(payloads: Iterable[bytes]) -> tuple[Aggregate, float, list[dict[str, Any]]]:
    """The sum of ``payloads``: the aggregate (recent blocks in time order), dropped events,
    and each payload's info."""
    total = Aggregate()
    dropped = 0.0
    infos = []
    recent: list[dict[str, Any]] = []
    for payload in payloads:
        aggregate, info = decode(payload)
        recent.extend(aggregate.recent)
        aggregate.recent.clear()
        total.merge(aggregate)
        dropped += float(info.get("dropped", 0.0))
        infos.append(info)
    recent.sort(key=lambda block: float(block.get("time") or 0.0))
    total.recent = deque(recent[-RECENT_BLOCKS:], maxlen=RECENT_BLOCKS)
    return total, dropped, infos


def merge_payloads(base: bytes | None, payloads: list[bytes]) -> bytes:
    """The retired record plus the records of processes that are gone, as one record (what
    :meth:`~flux.analytics.area.Area.claim` and ``fold`` write in slot 0)."""
    total, dropped, _ = _sum([base, *payloads] if base is not None else payloads)
    total.prune(PUBLISHED_TOP)
    # Room for slot 0's list of absorbed owners (one per slot at most).
    merged = encode(total, {"dropped": dropped}, COPY_BYTES - 4096)
    if merged is None:  # pragma: no cover - only with thousands of endpoints
        merged = encode(Aggregate(), {"dropped": dropped}) or b""
    return merged


# --- one area per file and process -------------------------------------------------------------

_areas_lock = threading.Lock()
_areas: dict[Path, tuple[int, Area]] = {}


def process_area(path: Path) -> Area:
    """This process's writable mapping of the analytics file ``path`` (created when missing).

    A forked child opens its own: ``flock`` belongs to the open file, which a child shares with
    its parent, so a shared one would let both "hold" the exclusive lock at once.
    """
    pid = os.getpid()
    with _areas_lock:
        known = _areas.get(path)
        if known is not None and known[0] == pid:
            return known[1]
        area = open_area(path, create=True)
        assert area is not None
        _areas[path] = (pid, area)
        return area


def _forget_areas_in_child() -> None:
    """Forked child: close the parent's mappings (and with them the parent's open file, whose
    lock the child would otherwise share)."""
    global _areas_lock
    _areas_lock = threading.Lock()
    for _, area in _areas.values():
        area.close()
    _areas.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_areas_in_child)


# --- the sink and the reader -------------------------------------------------------------------


class SharedSink:
    """This process's totals, published in the analytics file of the region at
    ``region_path``; reads give the sum over every process of that region."""

    def __init__(self, region_path: str | os.PathLike[str]) -> None:
        """Nothing is opened until the first write (a process that records nothing takes no
        record)."""
        self.path = area_path(region_path)
        self._lock = threading.Lock()
        self._total = Aggregate()
        self._info: dict[str, Any] = {}
        self._owner: Owner | None = None
        self._slot: int | None = None
        self._last_fold = 0.0
        self._warned = False

    def _attach(self) -> tuple[Area, int] | None:
        """This process's area and slot (claimed on first use, again in a forked child)."""
        owner = me()
        area = process_area(self.path)
        slot = self._slot
        if slot is not None and self._owner == owner and area.owner(slot) == owner:
            return area, slot
        if self._owner is not None and self._owner[0] != owner[0]:
            # A forked child: the parent's totals stay the parent's.
            self._total, self._info = Aggregate(), {}
        elif slot is not None:
            # Our slot was folded as if we were gone (a process that cannot see us: another
            # pid namespace sharing the file): what we published is in the retired totals
            # now; go on from zero in a new slot, so nothing is counted twice.
            self._total = Aggregate()
        slot = area.claim(owner, merge_payloads)
        if slot is None:
            if not self._warned:
                self._warned = True
                logger.warning(
                    "flux analytics: %s has no free record (more than %d processes); this "
                    "process's decisions are not in the summed analytics",
                    self.path,
                    SLOTS - 1,
                )
            return None
        if self._owner is None:
            # This process published here before (analytics configured again): go on from
            # there, so its totals never go backwards.
            previous = area.read(slot)
            if previous is not None:
                aggregate, _ = decode(previous)
                aggregate.merge(self._total)
                self._total = aggregate
        self._owner, self._slot = owner, slot
        return area, slot

    def _publish(self, batch: Aggregate | None = None) -> None:
        # Attach first: should our record have been folded meanwhile, the totals restart from
        # zero there, and this batch must be counted after that, not lost with them.
        attached = self._attach()
        if batch is not None:
            self._total.merge(batch)
            self._total.prune(PUBLISHED_TOP)
            self._total.forget_before(int(time.time()) - _SECONDS_KEPT)
        if attached is None:
            return
        area, slot = attached
        payload = encode(self._total, self._info)
        if payload is None:
            if not self._warned:
                self._warned = True
                logger.warning("flux analytics: this process's totals do not fit %s", self.path)
            return
        area.write(slot, payload)
        now = time.monotonic()
        if now - self._last_fold >= FOLD_INTERVAL:
            self._last_fold = now
            area.fold(merge_payloads)

    def write(
        self,
        events: Sequence[RawEvent],
        aggregate: Aggregate,
        weight: float,
        status: dict[str, Any] | None = None,
    ) -> None:
        """Add the batch to this process's totals and publish them."""
        with self._lock:
            if status is not None:
                self._info = dict(status)
            self._publish(aggregate)

    def heartbeat(self, info: dict[str, Any]) -> None:
        """Publish this process's status (dropped events, breaker state) once it has a record,
        and fold the records of processes that are gone."""
        with self._lock:
            self._info = dict(info)
            if self._slot is not None:
                self._publish()

    def after_fork(self) -> None:
        """In a forked child: start from nothing, in a record of its own."""
        self._lock = threading.Lock()
        self._total, self._info = Aggregate(), {}
        self._owner = self._slot = None

    def _reader(self) -> SharedReader:
        try:
            return SharedReader(self.path, area=process_area(self.path))
        except OSError:  # the file cannot be made: the reader reports why, as store_up=0
            return SharedReader(self.path)

    def snapshot(self) -> Snapshot:
        """The sum over every process of the region (this one as last published)."""
        return self._reader().snapshot()

    def blocked_count(self, identity: str, limit: str | None = None) -> dict[str, float]:
        """Blocked count of ``identity`` per limit, summed over every process."""
        return self._reader().blocked_count(identity, limit)

    def close(self) -> None:
        """Nothing to release: the record stays, and is folded once this process is gone."""


class SharedReader:
    """Reads the analytics file ``path`` (a region's, see
    :func:`~flux.analytics.area.area_path`): the sum over every process, alive or gone."""

    def __init__(self, path: str | os.PathLike[str], *, area: Area | None = None) -> None:
        """``area``: an open mapping of ``path`` to use (else the file is opened per read)."""
        self.path = Path(path)
        self._area = area

    def snapshot(self, *, top: int | None = None) -> Snapshot:
        """Everything recorded; an unreadable file gives an empty snapshot with
        ``store_up=False`` and the error in ``info["error"]``."""
        now = time.time()
        try:
            collected = self._collect()
        except OSError as exc:
            return Snapshot(
                source=SOURCE, aggregate=Aggregate(), store_up=False, info={"error": str(exc)}
            )
        if collected is None:
            return Snapshot(source=SOURCE, aggregate=Aggregate(), store_up=True, workers=0)
        live, gone, processes = collected
        total, dropped, infos = _sum([*live, *gone])
        breakers: dict[str, int] = {}
        for info in infos[: len(live)]:
            breaker = info.get("breaker")
            if breaker:
                breakers[breaker] = breakers.get(breaker, 0) + 1
        return Snapshot(
            source=SOURCE,
            aggregate=total,
            generated_at=now,
            store_up=True,
            workers=processes,
            dropped=dropped,
            breakers=breakers,
        )

    def _collect(self) -> tuple[list[bytes], list[bytes], int] | None:
        if self._area is not None:
            return self._area.collect()
        area = open_area(self.path, create=False)
        if area is None:
            return None
        try:
            return area.collect()
        finally:
            area.close()

    def blocked_count(self, identity: str, limit: str | None = None) -> dict[str, float]:
        """Blocked count of ``identity`` per limit (only ``limit`` when given)."""
        with contextlib.suppress(OSError):
            collected = self._collect()
            if collected is not None:
                live, gone, _ = collected
                total, _, _ = _sum([*live, *gone])
                return {
                    name: identities[identity]
                    for name, identities in total.blocked_by.items()
                    if (limit is None or name == limit) and identity in identities
                }
        return {}
