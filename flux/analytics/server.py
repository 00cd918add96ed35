"""The analytics HTTP server: ``/metrics``, ``/metrics.json``, ``/stats/<limit>`` and ``/``.

Started in a daemon thread of the application when ``[analytics] enabled`` (see
:func:`flux.analytics.configure`), or on its own by ``python -m flux serve``. It binds to
127.0.0.1 and answers read-only GET requests:

- ``/metrics``: Prometheus text format (:mod:`flux.analytics.prometheus`);
- ``/metrics.json``: per endpoint allowed, blocked, total, block rate, latency and limit,
  plus totals, top blocked identities and recent blocks (:func:`snapshot_to_json`);
- ``/stats/<limit>``: the same document for one limit; ``?identity=<id>`` adds that
  identity's blocked counts; ``/stats`` without a limit covers every limit;
- ``/``: the self-contained HTML dashboard (refreshes itself);
- ``/healthz``: ``ok``.

With Redis, every worker's numbers are summed (the server reads the shared counters); so they are
on the shared-memory store (every process of the region publishes its totals beside the region,
see :mod:`flux.analytics.shared_sink`); with the embedded store it shows its own process only.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import sys
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from flux._redis_py import redact_url, redis_target
from flux.analytics import dashboard, prometheus
from flux.analytics.aggregate import Snapshot, snapshot_to_json
from flux.analytics.sinks import MemorySink, RedisReader

__all__ = ["AnalyticsServer", "Source", "main", "start_background", "stats_document"]

logger = logging.getLogger("flux.analytics")

DEFAULT_HOST = "127.0.0.1"


class Source(Protocol):
    """Where the server reads its numbers."""

    def snapshot(self) -> Snapshot:
        """Everything recorded so far."""

    def blocked_count(self, identity: str, limit: str | None = None) -> dict[str, float]:
        """Blocked count of one identity per limit."""


def stats_document(source: Source, limit: str | None, identity: str | None) -> dict[str, Any]:
    """The ``/stats`` document: :func:`snapshot_to_json` for one ``limit`` (or all), plus
    ``"identity": {"identity", "blocked", "by_limit"}`` when ``identity`` is given."""
    document = snapshot_to_json(source.snapshot(), limit=limit)
    if identity is not None:
        by_limit = source.blocked_count(identity, limit)
        document["identity"] = {
            "identity": identity,
            "blocked": sum(by_limit.values()),
            "by_limit": by_limit,
        }
    return document


class _Handler(BaseHTTPRequestHandler):
    server: AnalyticsServer
    server_version = "flux-analytics"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _answer(self, *, send_body: bool) -> None:
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        source = self.server.source
        try:
            if path == "/":
                self._send(200, "text/html; charset=utf-8", dashboard.render(), send_body)
            elif path == "/metrics":
                text = prometheus.render(source.snapshot())
                self._send(200, prometheus.CONTENT_TYPE, text, send_body)
            elif path == "/metrics.json":
                self._json(snapshot_to_json(source.snapshot()), send_body)
            elif path == "/stats" or path.startswith("/stats/"):
                limit = unquote(path[len("/stats/") :]) if path != "/stats" else None
                identity = parse_qs(url.query).get("identity", [None])[0]
                self._json(stats_document(source, limit, identity), send_body)
            elif path == "/healthz":
                self._send(200, "text/plain; charset=utf-8", "ok\n", send_body)
            else:
                self._send(404, "text/plain; charset=utf-8", "not found\n", send_body)
        except BrokenPipeError:  # pragma: no cover - client went away
            pass
        except Exception:
            logger.exception("flux analytics: error answering %s", self.path)
            self._send(500, "text/plain; charset=utf-8", "internal error\n", send_body)

    def _json(self, document: Any, send_body: bool) -> None:
        self._send(200, "application/json", json.dumps(document), send_body)

    def _send(self, status: int, content_type: str, body: str, send_body: bool) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if send_body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("flux analytics: %s %s", self.address_string(), format % args)


class AnalyticsServer(ThreadingHTTPServer):
    """A threading HTTP server answering from one :class:`Source`."""

    daemon_threads = True

    def __init__(self, source: Source, port: int, host: str = DEFAULT_HOST) -> None:
        """Bind ``host:port`` now (raises OSError when the port is taken)."""
        self.source = source
        self._thread: threading.Thread | None = None
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        """``http://host:port/``."""
        host, port = self.server_address[:2]
        if isinstance(host, bytes):  # pragma: no cover - AF_UNIX never used here
            host = host.decode()
        return f"http://{host}:{port}/"

    def start(self) -> None:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="flux-analytics-server",
            daemon=True,
        )
        self._thread.start()

    def forget(self) -> None:
        """In a forked child: close this copy of the socket; the parent keeps serving."""
        self.socket.close()


def start_background(source: Source, port: int, host: str = DEFAULT_HOST) -> AnalyticsServer | None:
    """Serve ``source`` on ``host:port`` in a daemon thread; ``None`` when the port is taken
    (another worker of the same application serves it: logged at debug level)."""
    try:
        server = AnalyticsServer(source, port, host)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            logger.debug(
                "flux analytics: port %d is taken (another worker serves it); not serving", port
            )
        else:
            logger.warning("flux analytics: cannot serve on %s:%d: %s", host, port, exc)
        return None
    server.start()
    logger.info("flux analytics: serving on %s", server.url)
    return server


# --- python -m flux serve ------------------------------------------------------------------


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve /metrics (Prometheus), /metrics.json and the dashboard. With Redis "
        "(--redis or [redis] in flux.toml) the numbers are those of every worker.",
    )
    parser.add_argument("-p", "--port", type=int, help="port (default: [analytics] port, 4444)")
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to bind (default: {DEFAULT_HOST})"
    )
    parser.add_argument("--redis", metavar="URL", help="read the analytics of this Redis")
    parser.add_argument("-c", "--config", metavar="PATH", help="flux.toml to use")
    parser.add_argument("--stream", help="analytics stream name (default: [analytics] stream)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m flux serve``: serve until Ctrl-C; returns the exit status."""
    from flux.config import STORAGE_REDIS, STORAGE_SHARED, load_config
    from flux.exceptions import ConfigError

    args = _parser("python -m flux serve").parse_args(list(argv or []))
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    port = args.port if args.port is not None else config.analytics.port
    stream = args.stream or config.analytics.stream
    target = None
    if args.redis is not None or config.storage == STORAGE_REDIS:
        target = redis_target(config, args.redis)
    source: Source
    if target is not None:
        url = target.url
        try:
            client = target.connect()
        except (ImportError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        reader = RedisReader(client, stream)
        if not reader.ping():
            print(
                f"warning: Redis at {redact_url(url)} does not answer; serving anyway "
                "(flux_store_up is 0 until it does)",
                file=sys.stderr,
            )
        source = reader
        where = f"Redis {redact_url(url)}, stream {stream}"
    elif config.storage == STORAGE_SHARED:
        from flux._shared import region_path
        from flux.analytics.area import area_path
        from flux.analytics.shared_sink import SharedReader

        path = area_path(region_path(config))
        source = SharedReader(path)
        where = f"every process of the shared region, {path}"
    else:
        source = MemorySink()
        where = "this process only: no Redis configured, so nothing will be recorded here"
        print(
            "warning: no Redis (give --redis URL or a [redis] section): with the embedded "
            "store each application serves its own analytics ([analytics] enabled = true)",
            file=sys.stderr,
        )
    try:
        server = AnalyticsServer(source, port, args.host)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"flux analytics on {server.url} ({where})", flush=True)
    print(f"  metrics: {server.url}metrics  json: {server.url}metrics.json", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
