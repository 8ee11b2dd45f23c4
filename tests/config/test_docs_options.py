"""docs/OPTIONS.md is generated from the option declarations: it must match them."""

import subprocess
import sys

from helpers import ROOT


def test_options_reference_is_up_to_date():
    out = subprocess.run([sys.executable, "-m", "uwsgid.options_doc"], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out == (ROOT / "docs" / "OPTIONS.md").read_text(), \
        "docs/OPTIONS.md is stale: regenerate it with `.venv/bin/python -m uwsgid.options_doc > docs/OPTIONS.md`"
