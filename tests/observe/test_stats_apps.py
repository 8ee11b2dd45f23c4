"""Per-app counters: the stats JSON's workers[].apps[] and uwsgi.workers() count each app's
requests and exceptions per worker (written by the workers into the scoreboard, read by the
master), and the request log's "app: N" names the mounted app that served the request."""

from __future__ import annotations

import json
import re
import socket
import time

import pytest
from helpers import EXAMPLES, UWSGI, Server, free_port, http_get

from uwsgid.observe.scoreboard import APPS_PER_PLUGIN, Scoreboard

APP = '''
import uwsgi
def application(environ, start_response):
    if environ["PATH_INFO"] == "/boom":
        raise RuntimeError("boom")
    start_response("200 OK", [("Content-Type", "text/plain")])
    if environ["PATH_INFO"] == "/workers":
        me = [w for w in uwsgi.workers() if w["id"] == uwsgi.worker_id()][0]
        return [repr([(a["mountpoint"], a["requests"], a["exceptions"]) for a in me["apps"]]).encode()]
    return [b"ok"]
'''


class _P:
    def __init__(self, name):
        self.name = name


def test_scoreboard_apps_info_roundtrip():
    sb = Scoreboard(2, 1, {0: _P("cffi")})
    assert sb.apps_info(1) is None
    assert sb.set_apps_info(1, b"x" * 100) and sb.apps_info(1) == b"x" * 100
    assert not sb.set_apps_info(2, b"x" * 10**6) and sb.apps_info(2) is None   # too big: nothing
    sb.close()


def test_scoreboard_counts_per_app_and_worker():
    lua, cffi = _P("lua"), _P("cffi")
    sb = Scoreboard(2, 3, {6: lua, 0: cffi, 5: cffi})    # cffi under two modifiers: one range
    sb.end(1, 0, 200, 1, 1, False, 0, 0)
    sb.end(1, 2, 500, 1, 1, True, 5, 1)
    sb.end(1, 1, 200, 1, 1, False, 5, 1)
    sb.end(2, 0, 200, 1, 1, False, 6, 0)
    sb.end(2, 0, 503, 1, 1, False, 0, -1)                 # no app: not counted
    sb.end(2, 0, 200, 1, 1, False, 99, 0)                 # unknown modifier1
    sb.end(2, 0, 200, 1, 1, False, 0, APPS_PER_PLUGIN)    # past the slots: ignored, no overflow
    assert sb.app_counts(1, cffi, 0) == (1, 0)
    assert sb.app_counts(1, cffi, 1) == (2, 1)
    assert sb.app_counts(1, lua, 0) == (0, 0)
    assert sb.app_counts(2, lua, 0) == (1, 0)
    assert sb.app_counts(2, cffi, 0) == (0, 0)
    assert sb.worker(2)["requests"] == 4
    sb.close()


def _stats(port: int) -> dict:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        data = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                return json.loads(data)
            data += chunk


@pytest.mark.skipif(not UWSGI.exists(), reason="./uwsgi is not built (make build)")
@pytest.mark.parametrize("lazy", [[], ["--lazy-apps"]], ids=["preloaded", "lazy-apps"])
def test_stats_apps_count_requests_per_app(tmp_path, lazy):
    # with --lazy-apps only the workers load the apps: they publish them for the master
    app = tmp_path / "counted.py"
    app.write_text(APP)
    port, sport = free_port(), free_port()
    args = ["--master", "-p", "2", "--http-socket", f"127.0.0.1:{port}", "--stats", f"127.0.0.1:{sport}",
            "--mount", f"/a={app}", "--mount", f"/b={app}", "--manage-script-name",
            "--lua", EXAMPLES / "pippo.lua", *lazy]
    with Server(args, port) as s:
        for _ in range(5):
            assert http_get(port, "/a/x")[0] == 200
        for _ in range(3):
            assert http_get(port, "/b/x")[0] == 200
        assert http_get(port, "/b/boom")[0] == 500
        time.sleep(0.3)     # the last request's end() lands after its response
        d = _stats(sport)
        totals = {}
        for w in d["workers"]:
            for a in w["apps"]:
                key = (a["modifier1"], a["mountpoint"])
                r, e = totals.get(key, (0, 0))
                totals[key] = (r + a["requests"], e + a["exceptions"])
        assert totals == {(6, ""): (0, 0), (0, "/a"): (5, 0), (0, "/b"): (4, 1)}, d["workers"]
        # uwsgi.workers() carries the same per-app counters (bytes mountpoints, as uWSGI on py3)
        status, _, body = http_get(port, "/a/workers")
        assert status == 200 and b"(b'/a', " in body and b"(b'/b', " in body, body
        # the request log names the mounted app by its id
        log = s.log()
        assert re.search(r"\|app: 0\|.* GET /a/x ", log) and re.search(r"\|app: 1\|.* GET /b/x ", log), log[-2000:]
