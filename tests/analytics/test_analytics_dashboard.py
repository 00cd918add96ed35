"""The dashboard in a real browser: headless Chromium renders the numbers (--dump-dom)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from analytics_support import make_config

from flux import RateLimiter, analytics

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"
)


def dump_dom(url: str, profile: Path) -> str:
    """The DOM after the page's scripts ran (virtual time: no real waiting for the refresh)."""
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=3000",
        "--dump-dom",
        url,
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class _Tables(HTMLParser):
    """The text of every body row of every table, by table id."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._row: list[str] | None = None
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("id") or ""
            self.tables[self._table] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._row.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False
        elif tag == "tr" and self._row is not None and self._table is not None:
            self.tables[self._table].append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._row:
            self._row[-1] += data


def _tables(dom: str) -> dict[str, list[list[str]]]:
    parser = _Tables()
    parser.feed(dom)
    return parser.tables


def _text(dom: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', dom)
    assert match, f"#{element_id} not in the page"
    return match.group(1)


def test_the_dashboard_renders_the_numbers(tmp_path: Path) -> None:
    config = make_config()
    analytics.configure(config)
    limiter = RateLimiter(3, 60)
    for i in range(40):
        identity = f"ip:10.0.0.{i % 5}"
        analytics.record("login", "/login", limiter.hit(identity), 2e-5, identity)
    for _ in range(1234):
        analytics.record("search", "/search", limiter.hit("search-bot"), 1e-5, "search-bot")
    dom = dump_dom(f"http://127.0.0.1:{config.analytics.port}/", tmp_path / "profile")
    assert 'data-state="live"' in dom
    assert _text(dom, "total") == "1,274"
    assert _text(dom, "allowed") == "18"  # 3 per identity: 5 on /login, 1 on /search
    assert _text(dom, "blocked") == "1,256"
    assert _text(dom, "block-rate") == "98.6%"
    assert _text(dom, "workers") == "1"
    tables = _tables(dom)
    rows = {row[1]: row for row in tables["endpoints"]}
    #                   limit     endpoint   allowed blocked total  rate   limit
    assert rows["/login"][:7] == ["login", "/login", "15", "25", "40", "62.5%", "3"]
    assert rows["/search"][:7] == ["search", "/search", "3", "1,231", "1,234", "99.8%", "3"]
    assert tables["top-blocked"][0] == ["search", "search-bot", "1,231"]
    assert ["login", "ip:10.0.0.4", "5"] in tables["top-blocked"]
    assert tables["recent"][0][1:4] == ["search", "/search", "search-bot"]
