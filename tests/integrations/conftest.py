"""Framework tests: the test applications on sys.path, Django configured, time under control."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

APPS = Path(__file__).with_name("apps")
if str(APPS) not in sys.path:
    sys.path.insert(0, str(APPS))

import django_site  # noqa: E402  (needs the path above)

from flux import ManualClock  # noqa: E402
from flux.testing import manual_clock  # noqa: E402

django_site.setup()


@pytest.fixture(autouse=True)
def clock() -> Iterator[ManualClock]:
    """Every declared limit on a manual clock, empty, for each test (flux.testing)."""
    with manual_clock() as clock:
        yield clock
