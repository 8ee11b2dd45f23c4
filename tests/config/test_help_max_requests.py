"""`--max-requests` says why it seems to do nothing for 10 s (issue 21, item 10): a worker is not
recycled before --min-worker-lifetime; its help line (./uwsgi --help, docs/OPTIONS.md) says so."""

import pytest
from helpers import ROOT, UWSGI, run_uwsgi

import uwsgid.config.core_options  # noqa: F401  (declares the options)
from uwsgid.config.options import lookup


def test_max_requests_help_names_min_worker_lifetime():
    opt, floor = lookup("max-requests"), lookup("min-worker-lifetime")
    assert "--min-worker-lifetime" in opt.help and f"{floor.default} s by default" in opt.help, opt.help
    doc = (ROOT / "docs" / "OPTIONS.md").read_text()
    assert f"| `--max-requests` | `-R` | integer |  | {opt.help} |" in doc


@pytest.mark.skipif(not UWSGI.exists(), reason="./uwsgi is not built (make build)")
def test_max_requests_help_line_in_uwsgi_help():
    out = run_uwsgi(["--help"]).stdout
    line = next(line for line in out.splitlines() if "--max-requests" in line)
    assert "--min-worker-lifetime" in line, line
