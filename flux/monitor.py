"""``python -m flux monitor``: a live terminal view of rate limiting, across every worker.

Reads the analytics server's ``/metrics.json`` (``http://127.0.0.1:<port>``; the port comes
from ``--port``, ``$FLUX_MONITOR_PORT`` as flux-limiter had it, or ``[analytics] port``), or
Redis directly with ``--redis URL`` (no server needed). Without ``--redis``, when no server
answers and flux.toml names a Redis store, it reads that Redis instead; when it names a shared
region (``storage = "shared"``), the analytics its processes publish beside the region.

Shows totals and rates (decisions per second, computed between refreshes), a table per limit
and endpoint (allowed, blocked, block rate, limit, latency), the most blocked identities and
the latest blocks. Exits with status 1 and says what it tried when nothing is reachable;
Ctrl-C exits cleanly (status 0). ``--once`` prints one frame and exits.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from flux._redis_py import redis_target

__all__ = ["Frame", "HttpSource", "RedisSource", "SharedSource", "main", "render"]

PORT_ENV = "FLUX_MONITOR_PORT"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_INTERVAL = 1.0
TIMEOUT = 2.0
DASH = "\u2013"
TOP_ROWS = 10
RECENT_ROWS = 10


class Unreachable(Exception):
    """The source did not answer (the message says why)."""


class HttpSource:
    """The ``/metrics.json`` of an analytics server."""

    def __init__(self, host: str, port: int) -> None:
        """``http://host:port/metrics.json``."""
        self.url = f"http://{host}:{port}/metrics.json"
        self.label = f"server http://{host}:{port}/"

    def __call__(self) -> dict[str, Any]:
        """Fetch one document; raises :class:`Unreachable`."""
        try:
            with urllib.request.urlopen(self.url, timeout=TIMEOUT) as response:
                document: dict[str, Any] = json.load(response)
                return document
        except urllib.error.HTTPError as exc:
            raise Unreachable(f"{self.url} answered HTTP {exc.code}") from None
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise Unreachable(f"{self.url}: {reason}") from None

    def close(self) -> None:
        """Nothing to release (one connection per request)."""


class RedisSource:
    """The shared analytics counters in Redis (every worker's numbers)."""

    def __init__(self, url: str, stream: str, *, cluster: bool = False) -> None:
        """Read the analytics of stream ``stream`` in the Redis at ``url``."""
        from flux._redis_py import redact_url, redis_client
        from flux.analytics.sinks import RedisReader

        self.reader = RedisReader(redis_client(url, cluster=cluster), stream)
        self.label = f"Redis {redact_url(url)}"

    def __call__(self) -> dict[str, Any]:
        """Read one document; raises :class:`Unreachable`."""
        from flux.analytics.aggregate import snapshot_to_json

        snapshot = self.reader.snapshot(top=TOP_ROWS)
        if snapshot.store_up is False:
            raise Unreachable(f"{self.label}: {snapshot.info.get('error', 'no answer')}")
        return snapshot_to_json(snapshot, top=TOP_ROWS)

    def close(self) -> None:
        """Close the Redis connections."""
        self.reader.client.close()


class SharedSource:
    """The analytics file of a shared-memory region (every process of the region)."""

    def __init__(self, region: str | os.PathLike[str]) -> None:
        """Read the analytics published beside the region file ``region``."""
        from flux.analytics.area import area_path
        from flux.analytics.shared_sink import SharedReader

        self.reader = SharedReader(area_path(region))
        self.label = f"shared region {os.fspath(region)}"

    def __call__(self) -> dict[str, Any]:
        """Read one document; raises :class:`Unreachable`."""
        from flux.analytics.aggregate import snapshot_to_json

        snapshot = self.reader.snapshot(top=TOP_ROWS)
        if snapshot.store_up is False:
            raise Unreachable(f"{self.label}: {snapshot.info.get('error', 'unreadable')}")
        if snapshot.workers == 0 and not snapshot.aggregate.counts:
            raise Unreachable(f"{self.label}: nothing recorded there yet")
        return snapshot_to_json(snapshot, top=TOP_ROWS)

    def close(self) -> None:
        """Nothing to release (the file is opened per read)."""


@dataclass
class Frame:
    """What one screen shows: the latest document, the previous one (for rates), the status."""

    source: str
    current: dict[str, Any] | None = None
    previous: dict[str, Any] | None = None
    error: str | None = None
    error_since: float | None = None

    def update(self, document: dict[str, Any]) -> None:
        """A fresh document arrived."""
        self.previous, self.current = self.current, document
        self.error = self.error_since = None

    def failed(self, error: str) -> None:
        """The source stopped answering; keep the last numbers on screen."""
        if self.error_since is None:
            self.error_since = time.time()
        self.error = error

    def rate(self, *path: str) -> float | None:
        """Per-second rate of a counter between the last two documents (None on the first)."""
        if self.current is None or self.previous is None:
            return None
        elapsed = float(self.current["generated_at"]) - float(self.previous["generated_at"])
        if elapsed <= 0:
            return None
        now = _dig(self.current, path)
        then = _dig(self.previous, path)
        if now is None or then is None:
            return None
        return max(0.0, (now - then) / elapsed)


def _dig(document: Any, path: Sequence[str]) -> float | None:
    for part in path:
        if not isinstance(document, dict) or part not in document:
            return None
        document = document[part]
    return float(document) if isinstance(document, (int, float)) else None


def _num(value: float | None) -> str:
    if value is None:
        return DASH
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.1f}"


def _rate(value: float | None) -> str:
    return DASH if value is None else f"{value:,.1f}/s"


def _pct(value: float) -> Text:
    style = "green" if value < 0.05 else "yellow" if value < 0.25 else "bold red"
    return Text(f"{100 * value:.1f}%", style=style)


def _ms(value: float | None) -> str:
    return DASH if value is None else f"{value:.3f}"


def _header(frame: Frame, live: bool) -> Panel:
    document = frame.current or {}
    store = document.get("store", {})
    totals = document.get("totals", {})
    grid = Table.grid(padding=(0, 3))
    for _ in range(4):
        grid.add_column(justify="left")
    rates = document.get("rates") or {}
    decided = rates.get("decisions", frame.rate("totals", "total"))
    blocked = rates.get("blocked", frame.rate("totals", "blocked"))
    grid.add_row(
        Text.assemble(("decisions ", "dim"), (_num(totals.get("total")), "bold")),
        Text.assemble(("allowed ", "dim"), (_num(totals.get("allowed")), "bold green")),
        Text.assemble(("blocked ", "dim"), (_num(totals.get("blocked")), "bold red")),
        Text.assemble(("block rate ", "dim"), _pct(float(totals.get("block_rate", 0.0)))),
    )
    grid.add_row(
        Text.assemble(("rate ", "dim"), (_rate(decided), "bold")),
        Text.assemble(("blocked ", "dim"), (_rate(blocked), "red")),
        Text.assemble(("errors ", "dim"), (_num(totals.get("errors")), "bold")),
        Text.assemble(("workers ", "dim"), (_num(store.get("workers")), "bold")),
    )
    if frame.error is not None:
        since = time.strftime("%H:%M:%S", time.localtime(frame.error_since or time.time()))
        status = Text(f"unreachable since {since}: {frame.error} (retrying)", style="bold red")
    else:
        generated = document.get("generated_at", time.time())
        where = "all workers" if document.get("source") in ("redis", "shared") else "one process"
        status = Text.assemble(
            ("● live ", "bold green"),
            f"{frame.source} · {where} · {time.strftime('%H:%M:%S', time.localtime(generated))}",
        )
        if store.get("up") is False:
            status = Text("store unreachable", style="bold red")
        breakers = store.get("breakers") or {}
        if breakers:
            status.append("  breaker " + ", ".join(f"{k}: {v}" for k, v in breakers.items()))
    return Panel(
        Group(status, grid),
        title="[bold cyan]flux[/] monitor",
        title_align="left",
        subtitle="Ctrl-C to quit" if live else None,
        subtitle_align="right",
        box=box.ROUNDED,
    )


def _limits_table(frame: Frame) -> Table:
    table = Table(title="Limits", title_justify="left", box=box.SIMPLE_HEAVY, expand=True)
    table.add_column("Limit", style="bold")
    table.add_column("Endpoint")
    table.add_column("Allowed", justify="right", style="green")
    table.add_column("Blocked", justify="right", style="red")
    table.add_column("Block rate", justify="right")
    table.add_column("Capacity", justify="right")
    table.add_column("Rate", justify="right")
    table.add_column("p99 ms", justify="right")
    endpoints = (frame.current or {}).get("endpoints", [])
    previous = {(e["name"], e["endpoint"]): e for e in (frame.previous or {}).get("endpoints", [])}
    for e in endpoints:
        rate = None
        before = previous.get((e["name"], e["endpoint"]))
        if before is not None and frame.previous is not None and frame.current is not None:
            elapsed = frame.current["generated_at"] - frame.previous["generated_at"]
            if elapsed > 0:
                rate = max(0.0, (e["total"] - before["total"]) / elapsed)
        table.add_row(
            e["name"],
            e["endpoint"] or DASH,
            _num(e["allowed"]),
            _num(e["blocked"]),
            _pct(float(e["block_rate"])),
            _num(e["limit"]),
            _rate(rate),
            _ms((e.get("latency_ms") or {}).get("p99")),
        )
    if not endpoints:
        table.add_row(Text("no decisions recorded yet", style="dim"), *[""] * 7)
    return table


def _top_table(frame: Frame) -> Table:
    table = Table(title="Top blocked identities", title_justify="left", box=box.SIMPLE, expand=True)
    table.add_column("Limit")
    table.add_column("Identity", overflow="fold")
    table.add_column("Blocked", justify="right", style="red")
    rows = (frame.current or {}).get("top_blocked", [])[:TOP_ROWS]
    for row in rows:
        table.add_row(row["limit"], row["identity"], _num(row["blocked"]))
    if not rows:
        table.add_row(Text("nobody blocked", style="dim"), "", "")
    return table


def _recent_table(frame: Frame) -> Table:
    table = Table(title="Recent blocks", title_justify="left", box=box.SIMPLE, expand=True)
    table.add_column("Time")
    table.add_column("Limit")
    table.add_column("Endpoint")
    table.add_column("Identity", overflow="fold")
    rows = (frame.current or {}).get("recent_blocks", [])[:RECENT_ROWS]
    for row in rows:
        table.add_row(
            time.strftime("%H:%M:%S", time.localtime(row["time"])),
            row["limit"],
            row.get("endpoint") or DASH,
            row.get("identity") or DASH,
        )
    if not rows:
        table.add_row(Text("no blocks yet", style="dim"), "", "", "")
    return table


def render(frame: Frame, *, live: bool = True) -> RenderableType:
    """The whole screen for ``frame`` (``live``: with the Ctrl-C hint)."""
    bottom = Table.grid(expand=True, padding=(0, 2))
    bottom.add_column(ratio=1)
    bottom.add_column(ratio=1)
    bottom.add_row(_top_table(frame), _recent_table(frame))
    return Group(_header(frame, live), _limits_table(frame), bottom)


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Live terminal view of flux's rate limiting analytics."
    )
    parser.add_argument(
        "-p",
        "--port",
        type=int,
        help=f"analytics server port (default: ${PORT_ENV}, else [analytics] port, 4444)",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"server host ({DEFAULT_HOST})")
    parser.add_argument("--redis", metavar="URL", help="read Redis directly instead of a server")
    parser.add_argument("-c", "--config", metavar="PATH", help="flux.toml to use")
    parser.add_argument(
        "-n",
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL,
        help=f"seconds between refreshes (default {DEFAULT_INTERVAL:g})",
    )
    parser.add_argument("--once", action="store_true", help="print one frame and exit")
    return parser


def _candidates(args: argparse.Namespace) -> list[Callable[[], Any]]:
    """Sources to try, in order (built lazily: a Redis client only when it is tried)."""
    from flux.config import STORAGE_REDIS, STORAGE_SHARED, load_config

    config = load_config(args.config)
    stream = config.analytics.stream
    if args.redis:
        return [lambda: RedisSource(args.redis, stream)]
    env_port = os.environ.get(PORT_ENV)
    port = args.port
    if port is None and env_port:
        port = int(env_port)
    candidates: list[Callable[[], Any]] = [
        lambda: HttpSource(args.host, port if port is not None else config.analytics.port)
    ]
    if args.port is None and config.storage == STORAGE_REDIS:
        target = redis_target(config)
        candidates.append(lambda: RedisSource(target.url, stream, cluster=target.cluster))
    if args.port is None and config.storage == STORAGE_SHARED:
        from flux._shared import region_path

        path = region_path(config)
        candidates.append(lambda: SharedSource(path))
    return candidates


def _connect(args: argparse.Namespace) -> tuple[Any, dict[str, Any]] | str:
    """The first source that answers and its first document, or a message saying what failed."""
    failures = []
    for make in _candidates(args):
        try:
            source = make()
        except ImportError as exc:
            failures.append(str(exc))
            continue
        try:
            return source, source()
        except Unreachable as exc:
            source.close()
            failures.append(str(exc))
    tried = "\n".join(f"  - {failure}" for failure in failures)
    return (
        f"flux monitor: nothing to monitor; tried:\n{tried}\n"
        "Start the analytics server (`python -m flux serve`, or [analytics] enabled = true "
        "in flux.toml), pass its --port, or read Redis directly with --redis URL."
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the monitor; returns the exit status (1: nothing reachable)."""
    from flux.exceptions import ConfigError

    args = _parser("python -m flux monitor").parse_args(list(argv or []))
    if args.interval <= 0:
        print("flux monitor: --interval must be positive", file=sys.stderr)
        return 2
    console = Console()
    try:
        connected = _connect(args)
    except (ConfigError, ValueError) as exc:
        print(f"flux monitor: {exc}", file=sys.stderr)
        return 1
    if isinstance(connected, str):
        print(connected, file=sys.stderr)
        return 1
    source, document = connected
    try:
        return _show(console, source, document, args)
    finally:
        source.close()


def _show(console: Console, source: Any, document: dict[str, Any], args: argparse.Namespace) -> int:
    """Print one frame (``--once``) or run the live view until Ctrl-C."""
    frame = Frame(source=source.label)
    frame.update(document)
    if args.once:
        console.print(render(frame, live=False))
        return 0
    try:
        with Live(
            render(frame),
            console=console,
            screen=console.is_terminal,
            auto_refresh=False,
            transient=False,
        ) as live:
            while True:
                time.sleep(args.interval)
                try:
                    frame.update(source())
                except Unreachable as exc:
                    frame.failed(str(exc))
                live.update(render(frame), refresh=True)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
