"""`bench/run.py --help` speaks to its user (issue 21, item 10): no internal issue numbers."""

import re
import subprocess
import sys

from helpers import ROOT


def test_bench_help_names_no_internal_issue():
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--help"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Side-by-side benchmarks" in r.stdout
    assert not re.search(r"(?i)\bissue\b|#\d+", r.stdout), r.stdout
