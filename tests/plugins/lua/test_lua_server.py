"""Integration tests of the Lua plugin against the real ./uwsgi: HTTP, async, threads, input,
Debian's wsapi, Sputnik, load errors, and nginx with uwsgi_modifier1 6.

These need the whole server (helpers A: ./uwsgi, B: cli, C: worker, D: main)."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import textwrap
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
from helpers import EXAMPLES, ROOT, UWSGI, Server, free_port, http_request, run_uwsgi
from lua_helpers import EditForm
from nginx import AVAILABLE as NGINX_AVAILABLE
from nginx import Nginx, uwsgi_pass_conf

# LUA_TEST_UWSGI=/path/to/uwsgi runs these against another binary (e.g. a development launcher)
BINARY = Path(os.environ.get("LUA_TEST_UWSGI") or UWSGI)

pytestmark = pytest.mark.skipif(not BINARY.exists(), reason="./uwsgi is not built (make build)")

PIPPO_BODY = (b"<html><body><p>Hello Wsapi!</p><p>PATH_INFO: /hello/world</p>"
              b"<p>SCRIPT_NAME: </p></body></html>")


def lua_server(app, port, *extra, env=None):
    return Server(["--http-socket", f"127.0.0.1:{port}", "--http-socket-modifier1", "6",
                   "--lua", app, *extra], port, env=env, binary=BINARY)


def write_app(tmp_path, code: str, name: str = "app.lua") -> str:
    p = tmp_path / name
    p.write_text(textwrap.dedent(code))
    return str(p)


def request(port, method, path, body=None, headers=None, timeout=20.0):
    return http_request(port, method, path, body, headers, timeout=timeout)


def http_get(port, path="/"):
    return http_request(port, "GET", path)


# ---- pippo -----------------------------------------------------------------------------------

def test_pippo_over_http_socket():
    port = free_port()
    with lua_server(str(EXAMPLES / "pippo.lua"), port):
        status, headers, body = http_get(port, "/hello/world")
        assert status == 200
        assert headers["content-type"] == "text/html"
        assert body == PIPPO_BODY
        # keep-alive: several requests on one connection
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            for _ in range(3):
                conn.request("GET", "/hello/world")
                resp = conn.getresponse()
                assert resp.read() == PIPPO_BODY
        finally:
            conn.close()


def test_pippo_cpu_full_body():
    port = free_port()
    with lua_server(str(EXAMPLES / "pippo_cpu.lua"), port, "--async", "4"):
        status, _, body = http_get(port, "/x")
        assert status == 200
        assert body.startswith(b"<html><body><p>Hello Wsapi!</p><p>PATH_INFO: /x</p>")
        assert b"0<br/>1<br/>" in body and body.endswith(b"10000<br/></body></html>")


# ---- async and threads -----------------------------------------------------------------------

SLEEPER = """
return function(env)
  return 200, {["Content-Type"] = "text/plain"}, coroutine.wrap(function()
    coroutine.yield("core " .. uwsgi.async_id() .. " ")
    uwsgi.async_sleep(0.5)
    coroutine.yield()
    coroutine.yield("slept")
  end)
end
"""


def _concurrent(port, n, path="/"):
    results = [None] * n
    def one(i):
        try:
            results[i] = request(port, "GET", path, timeout=30)
        except Exception as e:  # reported below
            results[i] = e
    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    return time.monotonic() - t0, results


def test_async_sleep_interleaves_on_one_worker(tmp_path):
    app = write_app(tmp_path, SLEEPER)
    port = free_port()
    with lua_server(app, port, "--async", "8", "-p", "1"):
        http_get(port, "/warm")
        elapsed, results = _concurrent(port, 8)
        for r in results:
            assert not isinstance(r, Exception), r
            assert r[0] == 200 and r[2].endswith(b"slept")
        # sequentially this is 8 x 0.5 s = 4 s; interleaved about 0.5 s (generous bound)
        assert elapsed < 2.5, elapsed
        cores = {r[2].split()[1] for r in results}
        assert len(cores) > 1


SLEEP_FIRST = """
return function(env)
  uwsgi.async_sleep(1)   -- armed in the app, before it returns its body iterator
  return 200, {["Content-Type"] = "text/plain"}, coroutine.wrap(function()
    coroutine.yield("core " .. uwsgi.async_id() .. " ")
    coroutine.yield("done")
  end)
end
"""


def test_a_wait_armed_in_the_app_delays_the_body_on_its_core(tmp_path):
    app = write_app(tmp_path, SLEEP_FIRST)
    port = free_port()
    with lua_server(app, port, "--async", "2", "-p", "1"):
        elapsed, results = _concurrent(port, 2)
        for r in results:
            assert not isinstance(r, Exception), r
        assert sorted(r[2] for r in results) == [b"core 0 done", b"core 1 done"], results
        assert 0.9 < elapsed < 1.9, elapsed    # each slept 1 s, side by side on the two cores


def test_threads_serve_in_parallel(tmp_path):
    # a blocking sleep in Lua (luasocket): only parallel threads make 4 of them take ~1 s (4 s serially)
    app = write_app(tmp_path, """
    local socket = require "socket"
    return function(env)
      socket.sleep(1.0)
      return 200, {["Content-Type"] = "text/plain"}, "thread done"
    end
    """)
    port = free_port()
    with lua_server(app, port, "--threads", "4", "-p", "1"):
        http_get(port, "/warm")
        elapsed, results = _concurrent(port, 4)
        for r in results:
            assert not isinstance(r, Exception), r
            assert r[0] == 200 and r[2] == b"thread done"
        assert elapsed < 3.0, elapsed     # serially 4 s; the rest is margin for a loaded machine


# ---- request bodies --------------------------------------------------------------------------

def test_post_body_through_env_input(tmp_path):
    app = write_app(tmp_path, """
    return function(env)
      local n = tonumber(env.CONTENT_LENGTH) or 0
      local data = env.input:read(n) or ""
      return 200, {["Content-Type"] = "text/plain"}, #data .. ":" .. data:sub(1, 10) .. ":" .. data:sub(-5)
    end
    """)
    port = free_port()
    payload = b"0123456789" * 10000 + b"tail!"
    with lua_server(app, port):
        status, _, body = request(port, "POST", "/upload", body=payload,
                                  headers={"Content-Type": "application/octet-stream"})
        assert status == 200
        assert body == b"%d:0123456789:tail!" % len(payload)


def test_wsapi_request_parses_a_form(tmp_path):
    app = write_app(tmp_path, """
    local request = require "wsapi.request"
    local response = require "wsapi.response"
    return function(env)
      local req = request.new(env)
      local res = response.new(200, {["Content-Type"] = "text/plain"})
      res:write("method=", req.method, ";name=", tostring(req.POST.name), ";n=", tostring(req.POST.n),
                ";q=", tostring(req.GET.q))
      return res:finish()
    end
    """)
    port = free_port()
    form = urllib.parse.urlencode({"name": "Jörg & co", "n": "42"}).encode()
    with lua_server(app, port):
        status, _, body = request(port, "POST", "/form?q=search+me", body=form,
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 200
        assert body.decode() == "method=POST;name=Jörg & co;n=42;q=search me"


# ---- errors ----------------------------------------------------------------------------------

def test_app_error_is_500_and_worker_survives(tmp_path):
    app = write_app(tmp_path, """
    return function(env)
      if env.PATH_INFO == "/boom" then error("kaboom from lua") end
      if env.PATH_INFO == "/nilheaders" then return 200, nil, "x" end
      if env.PATH_INFO == "/numkey" then return 200, {[1] = "x"}, "x" end
      return 200, {["Content-Type"] = "text/plain"}, "fine"
    end
    """)
    port = free_port()
    srv = lua_server(app, port)
    with srv:
        for path in ("/boom", "/nilheaders", "/numkey"):
            status, _, _ = request(port, "GET", path)
            assert status == 500, path
            assert request(port, "GET", "/ok")[2] == b"fine"
        log = srv.wait_log("header name 1 is a number")
    assert "kaboom from lua" in log and "stack traceback" in log
    assert "nil headers" in log and "header name 1 is a number" in log


def test_body_error_after_headers_is_visible(tmp_path):
    app = write_app(tmp_path, """
    return function(env)
      return 200, {["Content-Type"] = "text/plain"}, coroutine.wrap(function()
        for i = 1, 50 do coroutine.yield(string.rep("z", 4096)) end
        error("late failure")
      end)
    end
    """)
    port = free_port()
    srv = lua_server(app, port)
    with srv:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", "/")
            resp = conn.getresponse()
            assert resp.status == 200
            with pytest.raises((http.client.IncompleteRead, ConnectionError)):
                resp.read()
        finally:
            conn.close()
        srv.wait_log("late failure")


def test_load_error_exits_22(tmp_path):
    bad = write_app(tmp_path, "return function( end", "bad.lua")
    r = run_uwsgi(["--http-socket", f"127.0.0.1:{free_port()}", "--http-socket-modifier1", "6", "--lua", bad], binary=BINARY)
    assert r.returncode == 22
    out = r.stdout + r.stderr
    assert "bad.lua" in out
    assert "Traceback" not in out

    r = run_uwsgi(["--http-socket", f"127.0.0.1:{free_port()}", "--lua", str(tmp_path / "missing.lua")], binary=BINARY)
    assert r.returncode == 22
    assert "missing.lua: no such file" in r.stdout + r.stderr


def test_bad_lua_engine_exits_1_with_one_line():
    r = run_uwsgi(["--http-socket", f"127.0.0.1:{free_port()}", "--lua", str(EXAMPLES / "pippo.lua"),
                   "--lua-engine", "lua99"], binary=BINARY)
    assert r.returncode == 1
    out = r.stdout + r.stderr
    lines = [ln for ln in out.splitlines() if "lua-engine" in ln]
    assert len(lines) == 1 and "unknown engine" in lines[0], out
    assert "Traceback" not in out and "GAME OVER" not in out


def test_os_exit_respawns_the_worker(tmp_path):
    app = write_app(tmp_path, """
    return function(env)
      if env.PATH_INFO == "/exit" then os.exit(3) end
      return 200, {}, "pid " .. uwsgi.mypid()
    end
    """)
    port = free_port()
    srv = lua_server(app, port, "--master", "-p", "1")
    with srv:
        pid1 = request(port, "GET", "/")[2]
        try:
            request(port, "GET", "/exit", timeout=5)
        except (http.client.HTTPException, ConnectionError, socket.timeout):
            pass
        deadline = time.monotonic() + 15
        pid2 = None
        while time.monotonic() < deadline:
            try:
                pid2 = request(port, "GET", "/", timeout=5)[2]
                if pid2 != pid1:
                    break
            except (http.client.HTTPException, ConnectionError, OSError):
                pass
            time.sleep(0.2)
        assert pid2 and pid2 != pid1 and pid2.startswith(b"pid ")
        assert "os.exit(3) called by the Lua app" in srv.log()


# ---- Sputnik ---------------------------------------------------------------------------------

def _sputnik_roundtrip(port):
    status, _, front = request(port, "GET", "/")
    assert status == 200 and b"Sputnik" in front
    status, _, edit = request(port, "GET", "/?p=index.edit")
    assert status == 200
    form = EditForm(edit.decode("utf-8", "replace"))
    marker = f"Edited by the test {time.time_ns()}"
    form.set(form.content_field(), marker)
    body, ctype = form.multipart()
    status, headers, _ = request(port, "POST", form.action or "/", body=body, headers={"Content-Type": ctype})
    assert status in (302, 303), status
    status, _, page = request(port, "GET", "/?p=index")
    assert status == 200 and marker.encode() in page
    status, _, history = request(port, "GET", "/?p=index.history")
    assert status == 200 and b"Anonymous" in history
    return marker


@pytest.mark.parametrize("mode", [["--threads", "20"], ["-p", "2", "--async", "4"]], ids=["threads20", "p2async4"])
def test_sputnik_pages(tmp_path, mode):
    data = tmp_path / "sputnik-data"
    r = subprocess.run(["bash", str(ROOT / "scripts" / "setup-sputnik.sh"), str(data)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    port = free_port()
    srv = lua_server(str(EXAMPLES / "sputnik.ws"), port, *mode, env={"SPUTNIK_DIR": str(data)})
    with srv:
        _sputnik_roundtrip(port)
        # concurrent readers on every core
        elapsed, results = _concurrent(port, 12, "/?p=index")
        for res in results:
            assert not isinstance(res, Exception), res
            assert res[0] == 200
    assert (data / "sputnik.db").exists()


# ---- nginx -----------------------------------------------------------------------------------

@pytest.mark.skipif(not NGINX_AVAILABLE, reason="nginx is not installed")
def test_behind_nginx_with_modifier1_6(tmp_path):
    up_port, ngx_port = free_port(), free_port()
    prefix = tmp_path / "nginx"
    conf = uwsgi_pass_conf(prefix, ngx_port, up_port, {"/": 6})
    with Server(["--socket", f"127.0.0.1:{up_port}", "--lua", str(EXAMPLES / "pippo.lua")], up_port, binary=BINARY):
        with Nginx(prefix, conf, ngx_port):
            status, headers, body = http_get(ngx_port, "/hello/world")
            assert status == 200, body
            # Debian's uwsgi_params sends no SCRIPT_NAME: it defaults to ""
            assert body == PIPPO_BODY


def test_lua_shell_reads_worker_stdin(tmp_path):
    script = tmp_path / "shell-input.lua"
    script.write_text('print("shell says " .. 6 * 7)\nshell_var = "set from the shell"\n')
    app = write_app(tmp_path, """
    return function() return 200, {}, tostring(shell_var) end
    """)
    port = free_port()
    with open(script, "rb") as stdin:
        srv = Server(["--http-socket", f"127.0.0.1:{port}", "--http-socket-modifier1", "6",
                             "--lua", app, "--lua-shell", "--honour-stdin"], port, binary=BINARY, stdin=stdin)
        with srv:
            # the shell ran in core 0's state before the worker served (then EOF resumed it)
            deadline = time.monotonic() + 10
            while "has been resumed" not in srv.log() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert request(port, "GET", "/")[2] == b"set from the shell"
            assert "shell says 42" in srv.log()


def test_harakiri_kills_a_runaway_loop(tmp_path):
    app = write_app(tmp_path, """
    return function(env)
      if env.PATH_INFO == "/spin" then while true do end end
      return 200, {}, "still here"
    end
    """)
    port = free_port()
    srv = lua_server(app, port, "--master", "-p", "1", "--harakiri", "2")
    with srv:
        with pytest.raises((http.client.HTTPException, ConnectionError, socket.timeout, OSError)):
            request(port, "GET", "/spin", timeout=15)
        assert request(port, "GET", "/ok", timeout=15)[2] == b"still here"


def test_uwsgi_reload_from_lua(tmp_path):
    app = write_app(tmp_path, """
    return function(env)
      if env.PATH_INFO == "/reload" then
        return 200, {}, tostring(uwsgi.reload()) .. " " .. uwsgi.masterpid()
      end
      return 200, {}, "pid " .. uwsgi.mypid()
    end
    """)
    port = free_port()
    srv = lua_server(app, port, "--master", "-p", "1")
    with srv:
        pid1 = request(port, "GET", "/")[2]
        ok, master = request(port, "GET", "/reload")[2].split()
        assert ok == b"true" and int(master) == srv.proc.pid
        deadline = time.monotonic() + 20
        pid2 = pid1
        while pid2 == pid1 and time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                pid2 = request(port, "GET", "/", timeout=5)[2]
            except (http.client.HTTPException, OSError):
                pass
        assert pid2 != pid1          # a new worker after the graceful reload


def test_lua_signal_handler_and_timer(tmp_path):
    app = write_app(tmp_path, """
    got = {}
    uwsgi.register_signal(5, "workers", function(sig) got[#got + 1] = "sig" .. sig end)
    return function(env)
      if env.PATH_INFO == "/raise" then uwsgi.signal(5) return 200, {}, "raised" end
      return 200, {}, table.concat(got, ",")
    end
    """)
    port = free_port()
    srv = lua_server(app, port, "--master", "-p", "1")
    with srv:
        assert request(port, "GET", "/raise")[2] == b"raised"
        deadline = time.monotonic() + 10
        body = b""
        while time.monotonic() < deadline and b"sig5" not in body:
            time.sleep(0.1)
            body = request(port, "GET", "/")[2]
        assert body.startswith(b"sig5"), srv.log()[-2000:]


def test_uwsgi_pid_of_workers(tmp_path):
    app = write_app(tmp_path, """
    return function()
      return 200, {}, table.concat({uwsgi.mywid, uwsgi.mypid(), uwsgi.pid(), uwsgi.pid(0),
                                    tostring(uwsgi.pid(1)), tostring(uwsgi.pid(2)), tostring(uwsgi.pid(9))}, " ")
    end
    """)
    port = free_port()
    srv = lua_server(app, port, "--master", "-p", "2")
    with srv:
        deadline = time.monotonic() + 10
        while True:   # the master records each worker's pid just after forking it
            wid, me, me2, master, p1, p2, p9 = request(port, "GET", "/")[2].decode().split()
            if "nil" not in (p1, p2) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert me == me2 and int(master) == srv.proc.pid and p9 == "nil"
        assert {p1, p2} >= {me} and p1 != p2 and "nil" not in (p1, p2)
