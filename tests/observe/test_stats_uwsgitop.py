"""uwsgitop (PyPI's, the tool uWSGI users run against --stats) renders our stats: it reads the
document's fields by name and fails with a KeyError traceback on a missing one."""

from __future__ import annotations

import os
import pty
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import EXAMPLES, UWSGI, Server, free_port, http_get

UWSGITOP = Path(sys.executable).parent / "uwsgitop"

pytestmark = [pytest.mark.skipif(not UWSGI.exists(), reason="./uwsgi is not built (make build)"),
              pytest.mark.skipif(not UWSGITOP.exists() and not shutil.which("uwsgitop"),
                                 reason="uwsgitop is not installed (pip install uwsgitop)")]


def test_uwsgitop_renders_our_stats():
    port, sport = free_port(), free_port()
    with Server(["--master", "-p", "2", "--http-socket", f"127.0.0.1:{port}", "--stats", f"127.0.0.1:{sport}",
                 "--wsgi-file", EXAMPLES / "hello.py"], port):
        for _ in range(3):
            assert http_get(port, "/")[0] == 200
        master, slave = pty.openpty()
        exe = str(UWSGITOP) if UWSGITOP.exists() else shutil.which("uwsgitop")
        env = dict(os.environ, TERM="xterm", COLUMNS="160", LINES="40")
        proc = subprocess.Popen([exe, "--frequency", "1", f"127.0.0.1:{sport}"], stdin=slave, stdout=slave,
                                stderr=slave, env=env, start_new_session=True, close_fds=True)
        os.close(slave)
        out = b""
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and proc.poll() is None:
                r, _, _ = select.select([master], [], [], 0.2)
                if r:
                    try:
                        out += os.read(master, 65536)
                    except OSError:
                        break
                if b"WID" in out and out.count(b"idle") >= 2:
                    break
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(5)
            while True:     # whatever is left (a traceback after an early exit)
                r, _, _ = select.select([master], [], [], 0.2)
                if not r:
                    break
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            os.close(master)
        text = out.decode("utf-8", "replace")
        assert "Traceback" not in text, text[-3000:]
        assert "WID" in text and "idle" in text, text[-3000:]
