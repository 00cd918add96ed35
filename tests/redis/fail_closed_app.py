"""A Flask app whose limit fails closed, keyed by an API key header, for a real gunicorn.

flux.toml (``$FLUX_CONFIG``) points at a Redis that is down."""

from __future__ import annotations

from flask import Flask

from flux import rate_limit

app = Flask(__name__)


@app.get("/")
@rate_limit(requests=5, period=60, key="header:X-API-Key")
def index() -> str:
    """Five per minute per API key."""
    return "ok"


@app.get("/ping")
def ping() -> str:
    """Health check, not limited."""
    return "pong"
