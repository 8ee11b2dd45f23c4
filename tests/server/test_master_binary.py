"""The master behind the real ./uwsgi executable with the real plugins: the --http router in front
of a Lua app (modifier1 6) and a Python app (modifier1 0), exit 22 on app load errors, stats, and
a graceful reload of the binary. Skipped when ./uwsgi is not built."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest
from helpers import ROOT, UWSGI, Server, free_port, run_uwsgi

from tests.master_helpers import get, read_stats


def _has_default_plugins() -> bool:
    """./uwsgi built with the default profile (Lua and Python plugins embedded)."""
    if not UWSGI.exists():
        return False
    try:
        out = subprocess.run([str(UWSGI), "--plugins-list"], capture_output=True, text=True, timeout=60,
                             cwd=ROOT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return False
    text = out.stdout + out.stderr
    return "lua" in text and "cffi" in text


pytestmark = pytest.mark.skipif(not _has_default_plugins(),
                                reason="./uwsgi is not built with the default profile (make build)")


@pytest.mark.parametrize("modifier1,expected", [(6, b"Hello Wsapi!"), (0, b"Hello World")])
def test_http_router_in_front_of_lua_and_python(tmp_path, modifier1, expected):
    port = free_port()
    stats = free_port()
    with Server(["--master", "-p", "2", "--http", f"127.0.0.1:{port}", "--http-modifier1", modifier1,
                 "--lua", "examples/pippo.lua", "--wsgi-file", "examples/hello.py",
                 "--stats", f"127.0.0.1:{stats}"], port, log_path=tmp_path / "log") as srv:
        status, body = get(port, "/some/path")
        assert status == 200, (body, srv.log())
        assert expected in body
        d = json.loads(read_stats(stats))
        assert len(d["workers"]) == 2
        assert srv.stop(signal.SIGTERM) == 0
        assert "goodbye to uWSGI." in srv.log()


@pytest.mark.parametrize("app", [["--lua", "/nonexistent/app.lua"], ["--wsgi-file", "/nonexistent/app.py"]])
def test_app_load_error_exits_22(tmp_path, app):
    port = free_port()
    r = run_uwsgi(["--master", "--http-socket", f"127.0.0.1:{port}", *app])
    assert r.returncode == 22, r.stdout + r.stderr
    assert "/nonexistent/app" in r.stdout + r.stderr


def test_binary_reload_keeps_serving(tmp_path):
    port = free_port()
    with Server(["--master", "-p", "1", "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", "examples/hello.py"],
                port, log_path=tmp_path / "log") as srv:
        assert get(port)[1] == b"Hello World"
        srv.signal(signal.SIGHUP)
        deadline_log = "binary reloading uWSGI..."
        import time
        end = time.monotonic() + 30
        while deadline_log not in srv.log() or srv.log().count("spawned uWSGI worker 1") < 2:
            assert time.monotonic() < end, srv.log()
            time.sleep(0.1)
        assert get(port)[1] == b"Hello World"
        assert srv.proc.poll() is None
