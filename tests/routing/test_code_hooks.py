"""Code in every request phase, in both runtimes (issue 22): Python hooks (--python-hooks, the
python: action) and Lua hooks (--lua-hooks, the lua: action) in front of a Python and a Lua app
in one instance, so that every phase runs across runtimes too; a hook that answers, redirects,
raises; access hooks that wait on I/O under --async 8 while the other cores serve; log handlers
that see the final status and byte count; ${hook[NAME]} in a route and %(hook.NAME) in the log.

Apps and hooks: code_hooks_app.py / code_hooks_app.lua, code_hooks_py.py / code_hooks.lua.
"""

from __future__ import annotations

import hashlib
import re
import sys
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from helpers import Server, free_port, http_get, run_uwsgi  # noqa: E402

LUA = {"X-Runtime": "lua"}


@pytest.fixture(scope="module")
def server():
    port = free_port()
    args = ["--plugins", "lua,cffi", "--http-socket", f"127.0.0.1:{port}", "--master", "--processes", "1",
            "--async", "8", "--wsgi-file", str(HERE / "code_hooks_app.py"), "--lua", str(HERE / "code_hooks_app.lua"),
            "--pythonpath", str(HERE), "--python-hooks", "code_hooks_py", "--lua-hooks", str(HERE / "code_hooks.lua"),
            "--route-run", "addvar:MD5=${hook[md5]}",
            "--route", "^/named-py python:code_hooks_py:named",
            "--route", f"^/named-lua lua:{HERE / 'code_hooks.lua'}:named",
            "--route", "^/slow-py hook:py_slow",
            "--route", "^/slow-lua hook:lua_slow",
            "--route", "^/rpc hook:pygate",
            "--route", "^/lrpc hook:luagate",
            "--route-if", "equal:${HTTP_X_RUNTIME};lua setmodifier1:6",
            "--log-format", "LOGLINE %(uri) %(status) %(size) md5=%(hook.md5) up=%(hook.upper_uri)"]
    with Server(args, port) as s:
        yield s


def test_access_hooks_of_both_runtimes_in_front_of_each_app(server):
    for headers, runtime in (({}, "python"), (LUA, "lua")):
        status, h, body = http_get(server.port, "/", headers=headers)
        assert status == 200, body
        text = body.decode()
        assert f"runtime={runtime}" in text
        assert "HOOK_SEEN=python" in text                 # a Python hook set a request var
        assert f"MD5={hashlib.md5(b'/').hexdigest()}" in text    # ${hook[md5]} in a route
        if runtime == "python":
            assert "('lua_user', 'lua-user')" in text and "('user', 'py-user')" in text     # environ["uwsgi.ctx"]
        else:
            assert "ctx.user=py-user ctx.lua_user=lua-user" in text      # env.ctx
        # both response hooks ran on the app's headers
        assert h["x-py-response"] == "200" and h["x-lua-response"] == "200"
        assert "x-powered-by" not in h


def test_hooks_that_answer_deny_redirect(server):
    for path, runtime_hdr in (("/py-deny", {}), ("/lua-deny", LUA), ("/lua-deny", {}), ("/py-deny", LUA)):
        status, h, body = http_get(server.port, path, headers=runtime_hdr)
        assert status == 403 and body == b"Forbidden"
    status, h, body = http_get(server.port, "/", headers={"X-Answer": "py", **LUA})
    assert (status, h["x-hook"], body) == (201, "py", b"answered by python\n")
    status, h, body = http_get(server.port, "/", headers={"X-Answer": "lua"})
    assert (status, h["x-hook"], body) == (201, "lua", b"answered by lua\n")
    for path in ("/py-redirect", "/lua-redirect"):
        status, h, _ = http_get(server.port, path)
        assert status == 302 and h["location"] == "/elsewhere"
    status, h, body = http_get(server.port, "/named-py")
    assert (status, h["x-named"], body) == (202, "1", b"by python:code_hooks_py:named\n")
    status, h, body = http_get(server.port, "/named-lua", headers=LUA)
    assert (status, h["x-named"], body) == (202, "lua", b"by lua named\n")
    # a function registered with uwsgi.register_rpc, called by name
    assert http_get(server.port, "/rpc", headers={"X-Rpc": "deny"})[0] == 401
    assert http_get(server.port, "/rpc")[0] == 200
    assert http_get(server.port, "/lrpc", headers={"X-Rpc": "deny"})[0] == 401     # a Lua one
    assert http_get(server.port, "/lrpc")[0] == 200
    # the answers are the requests' outcomes in the request log
    log = server.wait_log("LOGLINE /named-lua 202")
    assert re.search(r"LOGLINE /py-deny 403 \d+ ", log) and "LOGLINE /rpc 401" in log, log


def test_a_hook_that_raises_is_a_500_with_its_traceback(server):
    pid_before = _worker_pid(server)
    status, _h, body = http_get(server.port, "/py-raise")
    assert status == 500 and b"Internal Server Error" in body
    status, _h, _b = http_get(server.port, "/lua-raise", headers=LUA)
    assert status == 500
    log = server.wait_log("lua hook failure on purpose")
    assert "RuntimeError: hook failure on purpose" in log and "code_hooks_py.py" in log
    assert "stack traceback:" in log and "code_hooks.lua:12" in log
    # the worker is alive and serves on
    assert http_get(server.port, "/")[0] == 200
    assert _worker_pid(server) == pid_before


def test_response_hook_sets_status_and_log_hooks_see_the_outcome(server):
    status, h, body = http_get(server.port, "/py-status")
    assert status == 299 and h["x-py-response"] == "200"
    size = len(body)
    log = server.wait_log("LOGLINE /py-status")
    # the Python and the Lua log handlers ran after the response, with the final status and size
    assert f"py-log-hook status=299 sent={size} " in log
    assert f"lua-log-hook status=299 sent={size} ctx=lua-user" in log
    # a value the app put in ctx reaches the log handlers of both runtimes
    http_get(server.port, "/set-ctx", headers=LUA)
    server.wait_log("from_app=lua-app-value uri=/set-ctx")
    http_get(server.port, "/set-ctx")
    server.wait_log("from_app=app-value uri=/set-ctx")


def test_computed_variable_in_log_format(server):
    http_get(server.port, "/var-check")
    log = server.wait_log("LOGLINE /var-check")
    line = next(ln for ln in log.splitlines() if ln.startswith("LOGLINE /var-check"))
    assert f"md5={hashlib.md5(b'/var-check').hexdigest()}" in line and "up=/VAR-CHECK" in line


@pytest.mark.parametrize("path,runtime", [("/slow-py", {}), ("/slow-lua", LUA)])
def test_access_hooks_wait_without_holding_the_worker(server, path, runtime):
    """6 hooks sleeping 1.5 s each on one worker (--async 8): all done in about one wait, and a
    plain request is served meanwhile."""
    results = []

    def slow():
        results.append(http_get(server.port, path, headers={**runtime, "X-Sleep": "1.5"}, timeout=30))

    threads = [threading.Thread(target=slow) for _ in range(6)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(0.3)
    fast_t0 = time.monotonic()
    assert http_get(server.port, "/")[0] == 200
    fast = time.monotonic() - fast_t0
    for t in threads:
        t.join(30)
    elapsed = time.monotonic() - t0
    assert len(results) == 6 and all(r[0] == 200 for r in results), results
    assert fast < 1.0, f"a plain request waited {fast:.2f}s behind the sleeping hooks"
    assert elapsed < 6 * 1.5 / 2, f"6 waits of 1.5 s took {elapsed:.2f}s: they did not overlap"
    body = results[0][2].decode()
    assert ("('slept', 'yes')" in body) if path == "/slow-py" else ("ctx.slept=lua" in body)


def test_greenlet_hook_waits_inside_the_call():
    """Under --greenlet a plain (non-generator) Python hook waits in uwsgi.async_sleep()."""
    pytest.importorskip("greenlet")
    port = free_port()
    hooks = HERE / "code_hooks_green.py"
    args = ["--http-socket", f"127.0.0.1:{port}", "--async", "8", "--greenlet",
            "--wsgi-file", str(HERE / "code_hooks_app.py"), "--pythonpath", str(HERE),
            "--route", "^/nap python:code_hooks_green:nap"]
    with Server(args, port) as s:
        results = []
        threads = [threading.Thread(target=lambda: results.append(http_get(port, "/nap", timeout=30)))
                   for _ in range(5)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        elapsed = time.monotonic() - t0
        assert [r[0] for r in results] == [200] * 5, s.log()
        assert all(b"('napped', 'yes')" in r[2] for r in results)
        assert elapsed < 5 * 1.0 / 2, f"5 naps of 1 s took {elapsed:.2f}s"
    assert hooks.exists()


def test_bad_hook_references_stop_the_start_up():
    port = free_port()
    for args, expected in (
        (["--wsgi-file", str(HERE / "code_hooks_app.py"), "--route", "^/x python:no_such_module:fn"],
         "route action python:no_such_module:fn: ModuleNotFoundError"),
        (["--wsgi-file", str(HERE / "code_hooks_app.py"), "--route", "^/x python:nocolon"],
         "expected MODULE:FUNCTION"),
        (["--lua", str(HERE / "code_hooks_app.lua"), "--route", f"^/x lua:{HERE / 'code_hooks.lua'}:missing"],
         "defines no function missing"),
        (["--wsgi-file", str(HERE / "code_hooks_app.py"), "--route-run", "hooks:later"],
         "a phase is access, response or log"),
    ):
        r = run_uwsgi(["--plugins", "lua,cffi", "--http-socket", f"127.0.0.1:{port}", *args], timeout=60)
        assert r.returncode != 0, r.stdout + r.stderr
        assert expected in r.stdout + r.stderr, r.stdout + r.stderr


def _worker_pid(server) -> int:
    m = re.findall(r"spawned uWSGI worker 1 \(pid: (\d+)", server.log())
    return int(m[-1])
