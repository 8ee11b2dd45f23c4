"""The slow-client attacker and probe live in bench/harness/slowloris.py (bench/soak.py runs them
too); the tests import them from here."""

import sys
from pathlib import Path

_BENCH = str(Path(__file__).resolve().parent.parent / "bench")
if _BENCH not in sys.path:
    sys.path.insert(0, _BENCH)

from harness.slowloris import HTTP_HEAD, ProbeResult, Slowloris, probe, uwsgi_head  # noqa: E402,F401
