"""`make run` (issue 2, item 1): prints the URL it serves and serves pippo.lua's page there until
Ctrl-C (SIGINT to its process group, as a terminal sends it). The build step is a cached no-op
when ./uwsgi is up to date (make test builds first)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest
from helpers import ROOT, UWSGI, free_port, http_get, wait_port

pytestmark = [pytest.mark.skipif(not UWSGI.exists(), reason="./uwsgi is not built (make build)"),
              pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")]

PIPPO = (b"<html><body><p>Hello Wsapi!</p><p>PATH_INFO: /</p>"
         b"<p>SCRIPT_NAME: </p></body></html>")


def test_make_run_serves_pippo(tmp_path):
    port = free_port()
    out = tmp_path / "make-run.log"
    with open(out, "wb") as f:
        proc = subprocess.Popen(["make", "--no-print-directory", "run", f"RUN_ADDR=127.0.0.1:{port}"], cwd=ROOT,
                                stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        wait_port(port, timeout=180, proc=proc)
        status, _, body = http_get(port, "/")
        assert status == 200 and body == PIPPO, body
        assert f"http://127.0.0.1:{port}/" in out.read_text(errors="replace")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)      # Ctrl-C: the whole foreground group
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
    time.sleep(0.2)
    with pytest.raises(OSError):
        http_get(port, "/", timeout=2)      # Ctrl-C stopped the server too
