"""Print the README's complete C example (the ```c block under "### Example"), so that the C
suite compiles exactly what users copy, as C and as C++."""

from __future__ import annotations

import re
import sys
from pathlib import Path

readme = Path(sys.argv[1]).read_text(encoding="utf-8")
section = readme.split("### Example", 1)[1]
match = re.search(r"```c\n(.*?)```", section, re.S)
if match is None:
    sys.exit("README.md: no ```c block under '### Example'")
sys.stdout.write(match.group(1))
