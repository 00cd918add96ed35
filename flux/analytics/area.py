"""The analytics area of a shared-memory region: one fixed-size record per process.

Every process that records analytics on a shared region (``storage = "shared"``, or the region
a pre-fork server's workers share with no configuration) publishes its running totals into a
file beside the region, ``<region>.analytics`` (same directory, mode 0600). Readers (the
analytics server, ``stats()``, ``flux monitor``) sum the records. See docs/architecture.md,
*Analytics on the shared store*, for why it is built this way; in short:

- **One record per process, written only by its owner.** Slot 0 holds the totals of processes
  that are gone ("retired"); slots 1.. are claimed by live processes, found by their owner
  (pid and start time, so a reused pid is a different owner).
- **Two copies per record, each with a sequence number and a CRC32.** The owner always
  overwrites the older copy; a reader takes the valid copy with the highest sequence. A process
  killed mid-write (SIGKILL) leaves a copy whose CRC fails and the previous one intact; a
  reader racing a writer sees the same. No memory ordering is needed: the CRC tells a torn
  copy from a whole one, whatever order the bytes became visible in.
- **Ownership changes under ``flock``.** Claiming a slot and folding the records of dead
  processes into slot 0 take the file's exclusive lock; readers take the shared lock, so they
  never see a folded record both in slot 0 and in its own slot. The kernel releases the lock of
  a killed process. Slot 0 lists the owners it absorbed, so a fold interrupted between writing
  slot 0 and freeing the dead slots is finished, not repeated, by the next one.
- **Bounded.** ``SLOTS`` records of ``COPY_BYTES`` per copy: the file never grows (on tmpfs
  only the pages written take memory).

This module knows nothing of what a payload means (:mod:`flux.analytics.shared_sink` does); it
moves opaque byte strings.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import stat
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from flux._prefork import _ANALYTICS_SUFFIX, _started

__all__ = [
    "COPY_BYTES",
    "SLOTS",
    "SUFFIX",
    "Area",
    "Owner",
    "area_path",
    "me",
    "open_area",
]

SUFFIX = _ANALYTICS_SUFFIX
MAGIC = b"FLUXAN01"
VERSION = 1
# 127 processes (slot 0 is the retired totals); a server with more workers than that publishes
# the first 127 (the others log one warning each).
SLOTS = 128
COPY_BYTES = 32 * 1024
_HEADER_BYTES = 4096
_OWNER = struct.Struct("<QQ")  # pid, start time (clock ticks since boot; 0 when unknown)
_OWNER_BYTES = 64
_COPY_HEAD = struct.Struct("<QII")  # sequence (0: never written), length, crc32
_COPY_SPAN = _COPY_HEAD.size + COPY_BYTES
RECORD_BYTES = _OWNER_BYTES + 2 * _COPY_SPAN
FILE_BYTES = _HEADER_BYTES + SLOTS * RECORD_BYTES
_FILE_HEAD = struct.Struct("<8sIIII")  # magic, version, slots, record bytes, copy bytes
# Slot 0's payload starts with the owners it absorbed: a count, then (slot, pid, start) each.
_ABSORBED_COUNT = struct.Struct("<I")
_ABSORBED = struct.Struct("<IQQ")

Owner = tuple[int, int]
"""A process as a record owner: (pid, start time)."""

# A merge of slot 0's payload (None: empty) with the payloads of dead processes, fitting in
# ``COPY_BYTES`` (the callback trims what it must).
Merge = Callable[["bytes | None", "list[bytes]"], bytes]


def area_path(region_path: str | os.PathLike[str]) -> Path:
    """The analytics file of the region at ``region_path``: the same name plus ``.analytics``."""
    return Path(f"{os.fspath(region_path)}{SUFFIX}")


def _start_of(pid: int) -> int:
    started = _started(pid)
    return int(started) if started is not None and started.isdigit() else 0


def me() -> Owner:
    """This process as an owner."""
    pid = os.getpid()
    return pid, _start_of(pid)


def _alive(owner: Owner) -> bool:
    """Whether ``owner`` still runs. Doubt counts as alive: folding a live process's record
    would make its next publication count twice, keeping a dead one a while costs nothing."""
    pid, start = owner
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or no pid at all
        return False
    except OSError:
        return True  # EPERM: it exists
    return start == 0 or _start_of(pid) in (start, 0)


def _crc(sequence: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(struct.pack("<QI", sequence, len(payload))))


class Area:
    """One process's mapping of an analytics file (open it with :func:`open_area`)."""

    def __init__(self, path: Path, fd: int, mapped: mmap.mmap, writable: bool) -> None:
        """Wrap an open, checked file: ``fd`` and its ``mapped`` bytes."""
        self.path = path
        self.writable = writable
        self._fd = fd
        self._map = mapped
        # flock belongs to the open file description, which this process's threads share:
        # a thread lock orders them, the flock orders processes.
        self._thread_lock = threading.Lock()

    def close(self) -> None:
        """Unmap and close."""
        with contextlib.suppress(BufferError, ValueError):
            self._map.close()
        with contextlib.suppress(OSError):
            os.close(self._fd)

    @contextlib.contextmanager
    def _locked(self, exclusive: bool, *, wait: bool = True) -> Iterator[bool]:
        with self._thread_lock:
            flags = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
            try:
                fcntl.flock(self._fd, flags if wait else flags | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    # -- records ------------------------------------------------------------------------------

    def _record(self, slot: int) -> int:
        return _HEADER_BYTES + slot * RECORD_BYTES

    def owner(self, slot: int) -> Owner:
        """The owner written in ``slot`` ((0, 0): free)."""
        pid, start = _OWNER.unpack_from(self._map, self._record(slot))
        return pid, start

    def _set_owner(self, slot: int, owner: Owner) -> None:
        base = self._record(slot)
        if owner != (0, 0):  # a new owner starts with no copy
            for copy in range(2):
                _COPY_HEAD.pack_into(self._map, base + _OWNER_BYTES + copy * _COPY_SPAN, 0, 0, 0)
        _OWNER.pack_into(self._map, base, *owner)

    def _copy_heads(self, slot: int) -> list[tuple[int, int, int]]:
        base = self._record(slot) + _OWNER_BYTES
        return [_COPY_HEAD.unpack_from(self._map, base + c * _COPY_SPAN) for c in range(2)]

    def read(self, slot: int, attempts: int = 5) -> bytes | None:
        """The newest whole copy of ``slot`` (``None``: never written). A copy being written
        fails its CRC and the other one is used; should both fail (the owner wrote twice during
        this read), read again."""
        base = self._record(slot) + _OWNER_BYTES
        for _ in range(attempts):
            best: tuple[int, bytes] | None = None
            written = False
            for copy in range(2):
                start = base + copy * _COPY_SPAN
                sequence, length, crc = _COPY_HEAD.unpack_from(self._map, start)
                if sequence == 0:
                    continue
                written = True
                if length > COPY_BYTES:
                    continue
                body = start + _COPY_HEAD.size
                payload = self._map[body : body + length]
                if _crc(sequence, payload) == crc and (best is None or sequence > best[0]):
                    best = (sequence, payload)
            if best is not None:
                return best[1]
            if not written:
                return None
        return None

    def write(self, slot: int, payload: bytes) -> None:
        """Publish ``payload`` in ``slot`` (its owner only): over the older copy, so the newer
        one stays whole whatever happens to this process meanwhile."""
        if len(payload) > COPY_BYTES:
            raise ValueError(f"an analytics record holds at most {COPY_BYTES} bytes")
        heads = self._copy_heads(slot)
        copy = 0 if heads[0][0] <= heads[1][0] else 1
        sequence = max(heads[0][0], heads[1][0]) + 1
        start = self._record(slot) + _OWNER_BYTES + copy * _COPY_SPAN
        # Invalidate the copy first (sequence 0), then the body, then the real head: a reader
        # sees the old bytes, nothing, or the whole new copy (and checks the CRC regardless).
        _COPY_HEAD.pack_into(self._map, start, 0, 0, 0)
        body = start + _COPY_HEAD.size
        self._map[body : body + len(payload)] = payload
        _COPY_HEAD.pack_into(self._map, start, sequence, len(payload), _crc(sequence, payload))

    # -- slot 0: the retired totals -----------------------------------------------------------

    def _retired(self) -> tuple[set[tuple[int, int, int]], bytes | None]:
        raw = self.read(0)
        if raw is None or len(raw) < _ABSORBED_COUNT.size:
            return set(), None
        (count,) = _ABSORBED_COUNT.unpack_from(raw, 0)
        end = _ABSORBED_COUNT.size + count * _ABSORBED.size
        absorbed = {
            _ABSORBED.unpack_from(raw, _ABSORBED_COUNT.size + i * _ABSORBED.size)
            for i in range(count)
        }
        payload = raw[end:]
        return absorbed, payload or None

    def _write_retired(self, absorbed: set[tuple[int, int, int]], payload: bytes) -> None:
        head = _ABSORBED_COUNT.pack(len(absorbed)) + b"".join(
            _ABSORBED.pack(*entry) for entry in sorted(absorbed)
        )
        self.write(0, head + payload)

    def _fold_locked(self, merge: Merge) -> int:
        absorbed, base = self._retired()
        dead = []
        for slot in range(1, SLOTS):
            owner = self.owner(slot)
            if owner != (0, 0) and not _alive(owner):
                dead.append((slot, *owner))
        fresh = [entry for entry in dead if entry not in absorbed]
        if fresh:
            payloads = [p for p in (self.read(entry[0]) for entry in fresh) if p is not None]
            # Keep the absorbed owners still in their slots (an interrupted fold), add these.
            still = {entry for entry in absorbed if self.owner(entry[0]) == entry[1:]}
            head_room = _ABSORBED_COUNT.size + (len(still) + len(fresh)) * _ABSORBED.size
            merged = merge(base, payloads)
            if len(merged) + head_room > COPY_BYTES:  # pragma: no cover - merge trims
                raise ValueError("the merged analytics do not fit their record")
            self._write_retired(still | set(fresh), merged)
        for slot, _, _ in dead:
            self._set_owner(slot, (0, 0))
        return len(dead)

    # -- what processes do --------------------------------------------------------------------

    def claim(self, owner: Owner, merge: Merge) -> int | None:
        """The slot of ``owner``: the one it already has, else a free one (after folding the
        records of dead processes into slot 0). ``None`` when every slot is taken."""
        with self._locked(True):
            absorbed, _ = self._retired()
            for slot in range(1, SLOTS):
                if self.owner(slot) == owner and (slot, *owner) not in absorbed:
                    return slot
            self._fold_locked(merge)
            absorbed, _ = self._retired()
            for slot in range(1, SLOTS):
                # Not a slot whose absorbed entry names this very owner (it was folded while
                # alive, by a process that could not see it): readers would skip the record.
                if self.owner(slot) == (0, 0) and (slot, *owner) not in absorbed:
                    self._set_owner(slot, owner)
                    return slot
        return None

    def fold(self, merge: Merge) -> int:
        """Fold the records of dead processes into slot 0 and free their slots, unless another
        process is doing it right now; returns how many were folded."""
        with self._locked(True, wait=False) as locked:
            return self._fold_locked(merge) if locked else 0

    def collect(self) -> tuple[list[bytes], list[bytes], int]:
        """Everything to sum: ``(live payloads, gone payloads, live processes)``. Gone: slot 0
        and records of dead processes not folded yet (their last publication is final)."""
        live: list[bytes] = []
        gone: list[bytes] = []
        processes = 0
        with self._locked(False):
            absorbed, retired = self._retired()
            if retired is not None:
                gone.append(retired)
            for slot in range(1, SLOTS):
                owner = self.owner(slot)
                if owner == (0, 0) or (slot, *owner) in absorbed:
                    continue
                alive = _alive(owner)
                processes += alive
                payload = self.read(slot)
                if payload is not None:
                    (live if alive else gone).append(payload)
        return live, gone, processes


def _create(path: Path) -> None:
    """Create the file complete under a temporary name, then link it into place (another
    process may win the race: its file is as good)."""
    temp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident():x}.tmp")
    fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.ftruncate(fd, FILE_BYTES)
        os.pwrite(fd, _FILE_HEAD.pack(MAGIC, VERSION, SLOTS, RECORD_BYTES, COPY_BYTES), 0)
        with contextlib.suppress(FileExistsError):  # another process linked its own first
            os.link(temp, path)
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temp)


def open_area(path: Path, *, create: bool) -> Area | None:
    """Map the analytics file at ``path`` (created when ``create`` and missing; ``None`` when
    missing otherwise). Raises ``OSError`` naming the path for a file that is not ours to
    trust: another owner, group or world access, another layout."""
    flags = (os.O_RDWR if create else os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        if not create:
            return None
        _create(path)
        fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        problem = None
        if not stat.S_ISREG(info.st_mode):
            problem = "is not a regular file"
        elif info.st_uid != os.geteuid():
            problem = "belongs to another user"
        elif info.st_mode & 0o077:
            problem = "is accessible to other users (it must be mode 0600)"
        elif info.st_size != FILE_BYTES:
            problem = "has another size (another flux version, or truncated)"
        if problem is None:
            head = os.pread(fd, _FILE_HEAD.size, 0)
            if head != _FILE_HEAD.pack(MAGIC, VERSION, SLOTS, RECORD_BYTES, COPY_BYTES):
                problem = "is not a flux analytics file of this version"
        if problem is not None:
            raise OSError(errno.EINVAL, f"flux analytics: {path} {problem}; remove it")
        access = mmap.PROT_READ | (mmap.PROT_WRITE if create else 0)
        mapped = mmap.mmap(fd, FILE_BYTES, mmap.MAP_SHARED, access)
    except BaseException:
        os.close(fd)
        raise
    return Area(path, fd, mapped, create)
