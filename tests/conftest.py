"""Every test module can import the helpers of tests/support (servers, pacing, vectors)."""

from __future__ import annotations

import sys
from pathlib import Path

SUPPORT = Path(__file__).with_name("support")
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))
