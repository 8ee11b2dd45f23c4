"""SIGINT and SIGQUIT are an immediate shutdown (issue 3): a worker blocked in a request ends at
once, as uWSGI's do, instead of being SIGKILLed by the master 5 s later."""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import pytest
from helpers import UWSGI, Server, free_port, http_get, wait_file

pytestmark = pytest.mark.skipif(not UWSGI.exists(), reason="./uwsgi is not built (make build)")

APP = '''
import os, time
def application(environ, start_response):
    if environ.get("QUERY_STRING"):     # a test signals once the request is in here
        with open(os.path.join(os.path.dirname(__file__), "sleeping"), "a") as f:
            f.write("in\\n")
    time.sleep(float(environ.get("QUERY_STRING") or 0))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
'''


def _dead(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("sig", [signal.SIGQUIT, signal.SIGINT], ids=["SIGQUIT", "SIGINT"])
def test_immediate_stop_cuts_a_blocked_request(tmp_path, sig):
    app = tmp_path / "slow.py"
    app.write_text(APP)
    port = free_port()
    with Server(["--master", "-p", "2", "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", app], port) as srv:
        deadline = time.monotonic() + 30
        while "worker 2" not in srv.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = [int(p) for p in re.findall(r"spawned uWSGI worker \d \(pid: (\d+)", srv.log())]
        assert len(workers) == 2, srv.log()

        def slow():
            try:
                http_get(port, "/?30", timeout=40)
            except Exception:
                pass        # the connection is cut: that is the point
        threading.Thread(target=slow, daemon=True).start()
        wait_file(tmp_path / "sleeping")    # in progress (not 0.5 s: a loaded machine was slower)
        started = time.monotonic()
        srv.signal(sig)
        assert srv.proc.wait(15) == 0
        took = time.monotonic() - started
        assert took < 10, took      # not the 30 s of the in-flight request
        assert all(_dead(p, 5) for p in workers)
        log = srv.log()
        assert "goodbye to uWSGI." in log
        assert "requests in progress cut" in log, log[-2000:]   # ended by itself, not SIGKILLed
