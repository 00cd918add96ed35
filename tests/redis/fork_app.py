"""A Flask app limited on Redis, for gunicorn ``--preload`` (its limit is built in the master,
before the fork). flux.toml comes from ``$FLUX_CONFIG``."""

from __future__ import annotations

from flask import Flask

from flux import rate_limit

app = Flask(__name__)


@app.get("/")
@rate_limit(requests=5, period=3600)
def index() -> str:
    """Five per hour per client."""
    return "ok"


@app.get("/ping")
def ping() -> str:
    """Health check, not limited."""
    return "pong"
