"""``[flux] console_logging`` and ``log_file``: handlers on the ``flux`` logger.

flux logs through :mod:`logging` (loggers ``flux``, ``flux.redis``, ``flux.config``, ...), so an
application's own configuration decides where records go. These two settings, which
flux-limiter users set in flux.toml or on ``get_config()``, add a handler for them: stderr,
and/or a file. Each handler is added once per process however many limiters are built, and
the logger's level is left alone (records below the application's level stay dropped).
"""

from __future__ import annotations

import logging
import os
import sys
import threading

__all__ = ["apply_log_settings", "remove_log_handlers"]

LOGGER = "flux"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_lock = threading.Lock()
_handlers: dict[str, logging.Handler] = {}


def _add(key: str, path: str | None = None) -> None:
    """Add the handler for ``key`` (a file handler when ``path`` is given) unless present."""
    with _lock:
        if key in _handlers:
            return
        if path is not None:
            # delay=True: the file is created by the first record, not by configuring.
            handler: logging.Handler = logging.FileHandler(path, encoding="utf-8", delay=True)
        else:
            handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        logging.getLogger(LOGGER).addHandler(handler)
        _handlers[key] = handler


def apply_log_settings(console_logging: bool, log_file: str | None) -> None:
    """Send flux's log records to stderr (``console_logging``) and/or to ``log_file``."""
    if console_logging:
        _add("console")
    if log_file is not None:
        path = os.path.abspath(log_file)
        _add(f"file:{path}", path=path)


def remove_log_handlers() -> None:
    """Remove and close every handler added here (for tests)."""
    with _lock:
        logger = logging.getLogger(LOGGER)
        for handler in _handlers.values():
            logger.removeHandler(handler)
            handler.close()
        _handlers.clear()
