"""Lua requests the native lane defers (plugins/lua/lua_plugin/lane.py, core/cpython/lane_defer.c):
a body that waits on a cosocket in its first slice keeps its core, its slices are collected, and
the whole response goes out from C at the body's end. Against real ./uwsgi processes: over
keep-alive, the same log lines and counters as the Python path's (UWSGI_LANE_NO_DEFER=1), a
client gone meanwhile, the request taken by Python on the way (uwsgi.set_logvar), a body error
after the wait, and a graceful stop with deferred requests in flight."""

from __future__ import annotations

import json
import signal
import socket
import struct
import textwrap
import threading
import time

import pytest
from helpers import Server, free_port, read_response

from tests.lane_helpers import log_lines
from tests.master_helpers import read_stats
from tests.plugins.lua.test_cosocket import Backend

pytest.importorskip("lupa")

APP = textwrap.dedent('''
    local function slow(env, seconds)
      local s = uwsgi.tcp()
      assert(s:connect("127.0.0.1", tonumber(env.QUERY_STRING:match("port=(%d+)"))))
      s:send("SLOW " .. seconds .. "\\n")
      local line = s:receive()
      s:setkeepalive(10000, 8)
      return line
    end

    return function(env)
      local path = env.PATH_INFO
      return 200, {["Content-Type"] = "text/plain", ["X-Path"] = path}, coroutine.wrap(function()
        local line = slow(env, path == "/slow" and "0.2" or "0.02")
        if path == "/boom" then error("boom after the wait") end
        if path == "/logvar" then uwsgi.set_logvar("who", "lua") end
        coroutine.yield(line .. " ")
        coroutine.yield(path)
      end)
    end
''')


@pytest.fixture(scope="module")
def backend():
    b = Backend()
    yield b
    b.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    p = tmp_path_factory.mktemp("cosocket-defer") / "app.lua"
    p.write_text(APP)
    return p


def _server(app, *extra, defer=True, stop_signal=None):
    port = free_port()
    args = ["--master", "--processes", "1", "--http-socket", f"127.0.0.1:{port}", "--http-socket-modifier1", "6",
            "--lua", app, "--async", "8", *extra]
    kw = {"stop_signal": stop_signal} if stop_signal is not None else {}
    return Server(args, port, env={} if defer else {"UWSGI_LANE_NO_DEFER": "1"}, **kw)


def _get(f, s, path: str):
    s.sendall(b"GET %b HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
    return read_response(f)


def test_deferred_lua_responses_over_keep_alive(app, backend):
    with _server(app) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            f = s.makefile("rb")
            for i in range(5):
                status, headers, body = _get(f, s, f"/r{i}?port={backend.port}")
                assert (status, body) == (200, b"slow done /r%d" % i)
                assert headers["content-length"] == str(len(body)) and headers["x-path"] == f"/r{i}"
        log = srv.log()
    assert "2 switches on core" in log and "Traceback" not in log


def test_the_log_lines_and_counters_are_the_python_paths(app, backend):
    lines, docs = [], []
    paths = [f"/logged{i}?port={backend.port}" for i in range(5)]
    for defer in (True, False):
        stats = free_port()
        with _server(app, "--stats", f"127.0.0.1:{stats}", defer=defer) as srv:
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
                f = s.makefile("rb")
                bodies = [_get(f, s, p)[2] for p in paths]
            assert bodies == [b"slow done /logged%d" % i for i in range(5)]
            lines.append(log_lines(srv, "logged", len(paths)))
            deadline = time.monotonic() + 10
            while True:
                w = json.loads(read_stats(stats))["workers"][0]
                if w["requests"] == len(paths) or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            docs.append((w["requests"], w["apps"][0]["requests"], sum(c["requests"] for c in w["cores"])))
    deferred, python = lines
    assert len(deferred) == len(python) == len(paths)
    for d, p in zip(deferred, python):
        # the Python path streams the body (its head went out before the wait: chunked), the
        # lane sends it whole with a Content-Length: the response's framing differs, not the rest
        cut = lambda ln: (ln.split(" => ")[0], ln.split(" msecs ")[1].split(" headers")[0].split(") ")[0])
        assert cut(d) == cut(p)
    assert docs[0] == docs[1] == (len(paths),) * 3


@pytest.mark.parametrize("reset", [False, True])
def test_a_client_gone_while_deferred(app, backend, reset):
    with _server(app) as srv:
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            s.sendall(b"GET /gone?port=%d HTTP/1.1\r\nHost: x\r\n\r\n" % backend.port)
            if reset:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            assert _get(s.makefile("rb"), s, f"/next?port={backend.port}")[2] == b"slow done /next"
        assert "Traceback" not in srv.log()


def test_a_body_error_after_the_wait_is_a_500(app, backend):
    with _server(app) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            f = s.makefile("rb")
            status, _, body = _get(f, s, f"/boom?port={backend.port}")
            assert status == 500
            assert _get(f, s, f"/after?port={backend.port}")[2] == b"slow done /after"     # the connection goes on
        srv.wait_log("boom after the wait")


def test_taken_by_python_on_the_way(app, backend):
    """uwsgi.set_logvar after the wait asks for the request: the Python path takes it, with what
    the body wrote so far, and answers the rest."""
    with _server(app) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            f = s.makefile("rb")
            assert _get(f, s, f"/logvar?port={backend.port}")[2] == b"slow done /logvar"
            assert _get(f, s, f"/after?port={backend.port}")[2] == b"slow done /after"
        assert "Traceback" not in srv.log()


def test_graceful_stop_answers_the_deferred_requests(app, backend):
    with _server(app, stop_signal=signal.SIGTERM) as srv:
        got = []

        def one(i):
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
                got.append(_get(s.makefile("rb"), s, f"/slow?port={backend.port}&{i}")[2])
        began = backend.slow_started
        threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while backend.slow_started < began + 6 and time.monotonic() < deadline:
            time.sleep(0.01)    # until all six wait on the backend: deferred (a loaded machine is slow)
        srv.signal(signal.SIGTERM)
        for t in threads:
            t.join(20)
        assert got == [b"slow done /slow"] * 6
        assert srv.proc.wait(20) == 0
