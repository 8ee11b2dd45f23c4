"""--max-fd and --limit-as (uwsgid/server/rlimits.py): the limits are set as uWSGI sets them, in
a fresh process (the options parsed as the server parses them), and a refused one is logged
with its reason instead of stopping the start."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

from helpers import ROOT

PROBE = """
import json, resource, sys
from uwsgid.server import rlimits      # declares --max-fd and --limit-as
from uwsgid.config import cli
lines = []
rlimits.apply(cli.parse(sys.argv[1:] + ["--socket", ":0"], environ={}), lines.append)
print(json.dumps({"nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
                  "as": resource.getrlimit(resource.RLIMIT_AS), "log": lines}))
"""


def _probe(*args) -> dict:
    r = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=ROOT,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_max_fd_sets_both_open_files_limits():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 1000) if hard != resource.RLIM_INFINITY else 1000
    out = _probe("--max-fd", str(want))
    assert out["nofile"] == [want, want]
    assert f"detected max file descriptor number: {want}" in out["log"]


def test_limit_as_limits_the_address_space():
    out = _probe("--limit-as", "4096")
    assert out["as"] == [4096 << 20, 4096 << 20]
    assert "your process address space limit is 4294967296 bytes (4096 MB)" in out["log"]


def test_a_refused_limit_is_logged_and_the_start_goes_on():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        return
    # above the hard limit and the kernel's maximum: refused even to root
    out = _probe("--max-fd", str(1 << 40))
    assert any(line.startswith(f"--max-fd {1 << 40}: setrlimit(): ") for line in out["log"]), out
    assert out["nofile"][0] <= hard


def test_without_the_options_nothing_changes():
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    out = _probe()
    assert tuple(out["nofile"]) == before
    assert not [ln for ln in out["log"] if "limiting" in ln or "file descriptor" in ln], out["log"]
