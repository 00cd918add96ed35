"""``python -m flux <command>``: see flux.cli."""

from __future__ import annotations

from flux.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
