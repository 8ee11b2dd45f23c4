"""Test set-up shared by every test file: plugin packages importable from source in-process,
the build output (the _uwsgi module) and the shared helpers (tests/helpers.py, nginx.py) on
sys.path whatever pytest's import mode."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "tests", ROOT / "plugins" / "lua", ROOT / "plugins" / "cffi", ROOT / "build" / "lib"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))
