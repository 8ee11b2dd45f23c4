"""Test set-up shared by every test file: plugin packages importable from source in-process,
and the build output (the _uwsgi module) on sys.path."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "plugins" / "lua", ROOT / "plugins" / "cffi", ROOT / "build" / "lib"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))
