"""The bench harness's bookkeeping: where a run writes, and a server's CPU reading across a worker
that exits mid-run (no timing asserted)."""

import signal
import subprocess
import sys
import time

from helpers import ROOT

sys.path.insert(0, str(ROOT / "bench"))

import run  # noqa: E402  (bench/run.py)
from harness.servers import Server, ServerSpec  # noqa: E402


def test_only_a_full_run_replaces_the_tracked_results():
    assert run.parse_args([]).out == run.RESULTS
    assert run.parse_args(["--only", "lua-close"]).out == run.PARTIAL
    assert run.parse_args(["--quick"]).out == run.PARTIAL
    assert run.parse_args(["--only", "lua-close", "--out", "/tmp/x"]).out.as_posix() == "/tmp/x"
    assert run.parse_args(["--only", "lua-close,wsgi-hello", "rss"]).only == ["lua-close", "wsgi-hello", "rss"]
    ignored = subprocess.run(["git", "check-ignore", "-q", "bench/results/partial/latest.json"], cwd=ROOT)
    assert ignored.returncode == 0     # never committed by mistake


# A parent that starts a child burning CPU, reaps it, and waits: what the child spent stays in the
# server's reading (its parent's children times), as for a worker a master respawned.
_PARENT = """
import os, sys, time
pid = os.fork()
if pid == 0:
    t = time.process_time()
    while time.process_time() - t < 0.3:
        pass
    os._exit(0)
print("forked", flush=True)
os.waitpid(pid, 0)
print("reaped", flush=True)
time.sleep(60)
"""


def test_cpu_reading_keeps_a_reaped_childs_time(tmp_path):
    spec = ServerSpec("cpu", [sys.executable, "-c", _PARENT], port=0, http_ready=False)
    srv = Server(spec, tmp_path)
    srv._log = open(srv.log_path, "wb")
    srv.proc = subprocess.Popen(spec.argv, stdout=srv._log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while b"forked" not in srv.log_path.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
        before = srv.cpu_seconds()
        while b"reaped" not in srv.log_path.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.05)
        after = srv.cpu_seconds()
        assert b"reaped" in srv.log_path.read_bytes()
        assert after >= before + 0.2, (before, after)
    finally:
        spec.stop_signal = signal.SIGKILL
        srv.stop()
