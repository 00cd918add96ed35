"""Zero-configuration sharing for the workers of a pre-fork server.

With no storage configured (no ``[flux] storage``, no ``[redis]``, no ``$FLUX_STORAGE``), a
process that is one worker of a pre-fork server keeps its limits in a shared-memory region
private to that server: ``gunicorn -w 4`` enforces exactly N for the whole server, nothing is
shared with another server, and a restarted server starts fresh. A plain process (a script, a
test, a single-process server) keeps the per-process store.

Detected (Linux, from ``/proc``): a process whose parent runs ``gunicorn``, ``uvicorn``,
``hypercorn``, ``granian`` or ``uwsgi`` (their workers are forked or spawned by the master), and
the master of ``gunicorn --preload`` itself (it builds the limiters before forking its
workers). The region is named after the master's process id and start time, so a restarted
server, even one given the same process id, never meets its predecessor's region; regions of
servers that are gone are removed when a new one is made.

When none of that is detected but the process still looks like one of several workers, each
with its own per-process count, :func:`warn_if_several_workers` logs one warning saying how to
share the limit. The signals read, chosen because they are cheap and rarely wrong:

- ``$WEB_CONCURRENCY`` above 1: the worker count that Heroku-style platforms export and that
  gunicorn and uvicorn read, so a server started with it runs that many workers;
- on Linux, a parent (not init, which adopts unrelated orphans) running another child with this
  process's exact command line: forked workers of a server not in ``SERVERS``, a
  ``multiprocessing`` pool, the same program started several times by one supervisor.

``$SERVER_SOFTWARE`` is not read: it names a server (gunicorn exports it), not how many
workers it runs, and the servers that set it are detected above.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from flux import _flux

__all__ = [
    "SERVERS",
    "Server",
    "cannot_share",
    "detect",
    "opened_region",
    "server_region",
    "several_workers",
    "warn_if_several_workers",
]

log = logging.getLogger("flux")

SERVERS = ("gunicorn", "uvicorn", "hypercorn", "granian", "uwsgi")

# The default_shared_path name of an automatic region: "auto-<server>-<pid>-<start>".
_AUTO = "auto"
# The suffix of a region's analytics file (flux.analytics.area.SUFFIX; that module imports
# this one).
_ANALYTICS_SUFFIX = ".analytics"

_lock = threading.Lock()
_region: _flux.SharedRegion | None = None
_region_for: Server | None = None
_warned = False
_unshared: set[str] = set()
_warned_unshared = False


@dataclass(frozen=True)
class Server:
    """A pre-fork server's master process: its name, process id and start time (clock ticks
    since boot, which tells a restarted server from its predecessor with a reused pid)."""

    name: str
    pid: int
    started: str

    @property
    def region_name(self) -> str:
        return f"{_AUTO}-{self.name}-{self.pid}-{self.started}"


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _started(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (after the command name, which may hold spaces)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else None


def _server_name(argv: list[str]) -> str | None:
    """The server that ``argv`` runs: its program (``gunicorn``, ``/venv/bin/uvicorn``, a
    setproctitle title such as ``gunicorn: master [app]``) or ``python -m <server>``."""
    if not argv or not argv[0].strip():
        return None

    def program(arg: str) -> str:
        return os.path.basename(arg.split(":")[0].split()[0]) if arg.strip() else ""

    def server(name: str) -> str | None:
        for server in SERVERS:
            if name == server or name.startswith(f"{server}-") or name == f"{server}.py":
                return server
        return None

    first = program(argv[0])
    if not first.startswith("python"):
        return server(first)
    if len(argv) >= 3 and argv[1] == "-m":
        module = argv[2].split(".")[0]
        return module if module in SERVERS else None
    # A console script run through its shebang: python /venv/bin/gunicorn ...
    return server(program(argv[1])) if len(argv) >= 2 else None


_detected: tuple[int, Server | None] | None = None


def detect() -> Server | None:
    """The pre-fork server this process is a worker (or preloading master) of, if any (read
    once per process: a forked child looks again)."""
    global _detected
    cached = _detected
    if cached is not None and cached[0] == os.getpid():
        return cached[1]
    server = _detect()
    _detected = (os.getpid(), server)
    return server


def _detect() -> Server | None:
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getppid()
    name = _server_name(_cmdline(parent))
    if name is not None:
        started = _started(parent)
        return Server(name, parent, started) if started is not None else None
    own = _cmdline(os.getpid())
    if _server_name(own) == "gunicorn" and "--preload" in own:
        started = _started(os.getpid())
        return Server("gunicorn", os.getpid(), started) if started is not None else None
    return None


def _remove_stale(directory: Path) -> None:
    """Removes the automatic regions of this user whose server is gone."""
    prefix = f"flux-{os.getuid()}-{_AUTO}-"
    try:
        entries = list(directory.iterdir())
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        # A region's analytics file (flux.analytics.area) goes with its region.
        name = entry.name.removesuffix(_ANALYTICS_SUFFIX)
        parts = name[len(prefix) :].rsplit("-", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        if _started(int(parts[1])) != parts[2]:
            with contextlib.suppress(OSError):
                entry.unlink()


def server_region() -> _flux.SharedRegion | None:
    """The region private to this process's pre-fork server, or ``None`` for a plain process.

    When the region cannot be opened, logs one warning naming the path and what to do, and
    returns ``None``: the process then keeps the per-process store.
    """
    global _region, _region_for, _warned
    server = detect()
    if server is None:
        return None
    with _lock:
        if _region is not None and _region_for == server:
            return _region
        path = Path(_flux.default_shared_path(server.region_name))
        try:
            if not path.exists():
                _remove_stale(path.parent)
            region = _flux.SharedRegion(path)
        except (OSError, ValueError) as exc:
            if not _warned:
                _warned = True
                log.warning(
                    "flux: this process is a %s worker but its limits cannot be shared with "
                    "the other workers (%s); each worker keeps its own count. Set [flux] "
                    'storage = "shared" with a [shared] path that works, or use Redis.',
                    server.name,
                    exc,
                )
            return None
        _region, _region_for = region, server
        return region


def opened_region() -> _flux.SharedRegion | None:
    """The server's region if this process has opened it (for ``/metrics``), else ``None``."""
    return _region


def cannot_share(policy: str, reason: Exception) -> None:
    """Logs, once per algorithm, that a limit keeps the per-process store in a worker."""
    with _lock:
        if policy in _unshared:
            return
        _unshared.add(policy)
    log.warning(
        "flux: a %s limit cannot be shared between this server's workers (%s); it keeps a "
        "count per worker. Use another algorithm, or Redis, to share it.",
        policy,
        reason,
    )


def _siblings_like_me() -> bool:
    """Whether the parent runs another child with this process's command line (Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    me, parent = os.getpid(), os.getppid()
    if parent <= 1:
        return False
    own = _cmdline(me)
    if not own:
        return False
    try:
        entries = os.listdir("/proc")
    except OSError:
        return False
    for entry in entries:
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        # fields[1] is the parent's pid (field 4 of /proc/<pid>/stat).
        if len(fields) > 1 and fields[1] == str(parent) and _cmdline(int(entry)) == own:
            return True
    return False


def several_workers() -> str | None:
    """Why this process looks like one of several workers, or ``None``."""
    concurrency = os.environ.get("WEB_CONCURRENCY", "").strip()
    if concurrency.isdigit() and int(concurrency) > 1:
        return f"WEB_CONCURRENCY={concurrency}"
    if _siblings_like_me():
        return "its parent runs other processes with the same command line"
    return None


def warn_if_several_workers() -> None:
    """Logs, once per process, that limits are counted per process although this process looks
    like one of several workers (called only when the per-process store was chosen for want of
    any configured storage, and no pre-fork server was detected)."""
    global _warned_unshared
    with _lock:
        if _warned_unshared:
            return
        _warned_unshared = True
    reason = several_workers()
    if reason is None:
        return
    log.warning(
        "flux: this process looks like one of several workers (%s), but its limits are "
        "counted per process, so each worker allows the full limit. To share them, set "
        '[flux] storage = "shared" (or FLUX_STORAGE=shared) for the workers of this machine, '
        "or use Redis.",
        reason,
    )
