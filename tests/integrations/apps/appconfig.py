"""What the test applications share: their flux.toml, quotas and middleware options."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from flux import load_config

CONFIG = load_config(Path(__file__).with_name("flux.toml"))

QUOTA = 3  # most limited views: 3 per PERIOD
PERIOD = 3600  # long enough that no test ever sees a refill without moving a manual clock
BURST_QUOTA = 10  # the view hammered by concurrent clients under a real server
PARK_QUOTA = 5  # the async view whose allowed requests wait for /release
NAMED = "api_tier_1"  # 4 per hour in flux.toml
ALGO_QUOTA = 3
ALGO_PERIOD = 60

# The global limits every framework's middleware test uses.
MIDDLEWARE = {
    "default": "global_test",  # 6 per hour
    "paths": {"/api/": NAMED},
    "exempt_paths": ["/ping"],
    "exempt_methods": ["OPTIONS"],
}
GLOBAL_QUOTA = 6

# Views on these configs check jitter and headers_on_success in every framework.
JITTER_MAX_MS = 500
JITTER_CONFIG = replace(
    CONFIG, flux=replace(CONFIG.flux, jitter_enabled=True, jitter_max_ms=JITTER_MAX_MS)
)
QUIET_CONFIG = replace(CONFIG, flux=replace(CONFIG.flux, headers_on_success=False))
