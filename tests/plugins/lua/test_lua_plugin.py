"""Unit tests of the Lua plugin, in process with lupa: env, body types, errors, GC, states, waits."""

from __future__ import annotations

import contextlib
import textwrap
import threading
import time
import types

import pytest
from lua_helpers import EXAMPLES, FakeCore, FakeRequest, FakeWorker, run_request

import lua_plugin
import uwsgid.config.core_options  # noqa: F401  (declares the core options)
from lua_plugin import response as lresp
from lua_plugin.plugin import LuaPlugin
from uwsgid.config import options as uopts
from uwsgid.plugins.contract import AppLoadError, OptionValueError

for _opt in LuaPlugin.options:
    try:
        uopts.declare(_opt)
    except ValueError:
        pass  # already declared by the plugin loader


def make_opts(**kw):
    o = uopts.Options()
    for name, value in kw.items():
        opt = uopts.lookup(name.replace("_", "-"))
        assert opt is not None, name
        for v in (value if opt.multi and isinstance(value, list) else [value]):
            o.set(opt, v)
    return o


def lua_app(tmp_path, code: str, name: str = "app.lua"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(code))
    return str(p)


def make_plugin(**kw):
    p = LuaPlugin()
    p.configure(make_opts(**kw), None)
    return p


def serve(plugin, core=None, **req_kw):
    if core is None:
        core = FakeCore()
    if "lua" not in core.state:
        plugin.init_core(core)
    return run_request(plugin, core, FakeRequest(core, **req_kw))


@contextlib.contextmanager
def current_core(plugin):
    """A core with its Lua state and a request, made the current core as the worker does while
    it serves: (core, request)."""
    from uwsgid.plugins import api
    core = FakeCore()
    plugin.init_core(core)
    req = FakeRequest(core)
    core.request = req
    api.set_current(core)
    try:
        yield core, req
    finally:
        api.set_current(None)


# ---- the examples -------------------------------------------------------------------------

PIPPO_BODY = (b"<html><body><p>Hello Wsapi!</p><p>PATH_INFO: /hello</p>"
              b"<p>SCRIPT_NAME: </p></body></html>")


def test_plugin_exported():
    assert lua_plugin.plugin.name == "lua" and lua_plugin.plugin.modifier1 == 6
    names = {o.name for o in lua_plugin.plugin.options}
    assert {"lua", "lua-load", "lua-postload", "lua-shell", "lua-gc-freq", "lua-gc-full",
            "lua-engine", "lua-path", "lua-cpath", "lua-max-memory"} <= names
    assert all(o.group == "lua" for o in lua_plugin.plugin.options)


def test_pippo_exact_body():
    p = make_plugin(lua=str(EXAMPLES / "pippo.lua"))
    r = serve(p, path="/hello")
    assert r.exc is None
    assert r.status == b"200 OK"
    assert r.req.header("Content-type") == b"text/html"
    assert r.body == PIPPO_BODY
    assert r.yields == 0  # five tiny yields: one slice, finished synchronously


def test_pippo_cpu_is_coalesced():
    p = make_plugin(lua=str(EXAMPLES / "pippo_cpu.lua"))
    r = serve(p, path="/x")
    assert r.exc is None and r.status == b"200 OK"
    expected = (b"<html><body><p>Hello Wsapi!</p><p>PATH_INFO: /x</p><p>SCRIPT_NAME: </p>"
                + b"".join(b"%d<br/>" % i for i in range(10001)) + b"</body></html>")
    assert r.body == expected
    # 10006 yields become a handful of writes
    assert len(r.req.chunks) < 20


# ---- env --------------------------------------------------------------------------------------

ENV_DUMP = """
return function(env)
  local keys = {}
  for k, v in pairs(env) do
    if type(v) == "string" then keys[#keys + 1] = k .. "=" .. v end
  end
  table.sort(keys)
  keys[#keys + 1] = "input=" .. type(env.input) .. "/" .. type(env.input.read)
  keys[#keys + 1] = "error=" .. type(env.error) .. "/" .. type(env.error.write)
  return 200, {["Content-Type"] = "text/plain"}, table.concat(keys, "\\n")
end
"""


def test_env_has_every_var_and_defaults(tmp_path):
    p = make_plugin(lua=lua_app(tmp_path, ENV_DUMP))
    r = serve(p, path="/a/b", query="x=1&y=2", headers={"X-Thing": "yes"}, script_name="/app")
    lines = r.body.decode().split("\n")
    env = dict(line.split("=", 1) for line in lines)
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/a/b"
    assert env["SCRIPT_NAME"] == "/app"
    assert env["QUERY_STRING"] == "x=1&y=2"
    assert env["SERVER_NAME"] == "localhost" and env["SERVER_PORT"] == "8080"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1" and env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["HTTP_X_THING"] == "yes"
    assert env["APP_PATH"].endswith("app.lua")
    assert env["CONTENT_TYPE"] == ""          # wsapi.request does string.find on it
    assert env["input"] == "table/function" and env["error"] == "table/function"


ENV_EXACT = """
return function(env)
  local keys = {}
  for k, v in pairs(env) do
    if type(v) == "string" and k ~= "APP_PATH" then keys[#keys + 1] = k end
  end
  table.sort(keys)
  local out = {}
  for _, k in ipairs(keys) do out[#out + 1] = k .. "\\0" .. env[k] end
  return 200, {["Content-Type"] = "application/octet-stream"}, table.concat(out, "\\0")
end
"""


def _block(pairs) -> bytes:
    return b"".join(len(k).to_bytes(2, "little") + k + len(v).to_bytes(2, "little") + v for k, v in pairs)


def test_env_from_a_uwsgi_vars_block_is_the_env_from_its_dict(tmp_path):
    # behind nginx Lua parses the packet's vars itself (req.vars_block): the same env as
    # lupa's table_from of the dict the core parsed from the same bytes
    from uwsgid.net.packet import parse_vars
    p = make_plugin(lua=lua_app(tmp_path, ENV_EXACT))
    pairs = [(b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", b"/x"), (b"QUERY_STRING", b""),
             (b"HTTP_X_NUL", b"a\0b"), (b"HTTP_X_LONG", b"v" * 3000), (b"HTTP_DUP", b"first"),
             (b"HTTP_DUP", b"second"), (b"SERVER_PROTOCOL", b"HTTP/1.1")]
    block = _block(pairs)
    core = FakeCore()
    p.init_core(core)
    bodies = []
    for use_block in (False, True):
        req = FakeRequest(core)
        req.vars = parse_vars(block)
        req.vars[b"SCRIPT_NAME"] = b""      # what the uwsgi parser adds when nginx sends none
        req.vars_block = block if use_block else None
        r = run_request(p, core, req)
        assert r.status.startswith(b"200"), r.body
        bodies.append(r.body)
    assert bodies[0] == bodies[1]
    assert b"HTTP_DUP\0second" in bodies[1] and b"HTTP_X_NUL\0a\0b" in bodies[1]
    assert b"SCRIPT_NAME\0\0" in bodies[1] and b"CONTENT_LENGTH\0" in bodies[1]


@pytest.mark.parametrize("cut", [1, 3, 5, 17])
def test_a_cut_vars_block_does_not_break_lua(tmp_path, cut):
    # the core checks a packet before dispatch; the Lua parser still stops cleanly on a short one
    p = make_plugin(lua=lua_app(tmp_path, ENV_EXACT))
    core = FakeCore()
    p.init_core(core)
    req = FakeRequest(core)
    req.vars_block = _block([(b"PATH_INFO", b"/abc"), (b"QUERY_STRING", b"q=1")])[:-cut]
    r = run_request(p, core, req)
    assert r.status.startswith(b"200") and r.exc is None


def test_env_script_name_defaults_to_empty(tmp_path):
    p = make_plugin(lua=lua_app(tmp_path, ENV_DUMP))
    core = FakeCore()
    p.init_core(core)
    req = FakeRequest(core, path="/")
    del req.vars[b"SCRIPT_NAME"]
    r = run_request(p, core, req)
    assert b"SCRIPT_NAME=\n" in r.body or r.body.endswith(b"SCRIPT_NAME=")


def test_input_read_forms(tmp_path):
    app = lua_app(tmp_path, """
    return function(env)
      local a = env.input:read(3)
      local line = env.input:readline()
      local l2 = env.input:read("*l")
      local rest = env.input:read()
      local eof = env.input:read(10)
      return 200, {}, table.concat({a, "|", line, "|", l2, "|", rest, "|", tostring(eof)})
    end
    """)
    p = make_plugin(lua=app)
    r = serve(p, method="POST", body=b"abcdef\nsecond\nthe rest", content_type="text/plain")
    assert r.body == b"abc|def\n|second|the rest|nil"


def test_env_error_write_goes_to_log(tmp_path, capfd):
    app = lua_app(tmp_path, """
    return function(env)
      env.error:write("something ", "bad\\n")
      print("printed", 42)
      io.write("partial ")
      io.write("line\\n")
      return 200, {}, "ok"
    end
    """)
    p = make_plugin(lua=app)
    r = serve(p)
    assert r.body == b"ok"
    err = capfd.readouterr().err
    assert "something bad" in err
    assert "printed\t42" in err
    assert "partial line" in err


def test_wsapi_request_parses_a_form(tmp_path):
    app = lua_app(tmp_path, """
    local request = require "wsapi.request"
    local response = require "wsapi.response"
    return function(env)
      local req = request.new(env)
      local res = response.new()
      res:write("name=" .. tostring(req.POST.name) .. ";q=" .. tostring(req.GET.q))
      return res:finish()
    end
    """)
    p = make_plugin(lua=app)
    r = serve(p, method="POST", query="q=search", body=b"name=J%C3%B6rg+X&other=1",
              content_type="application/x-www-form-urlencoded")
    assert r.exc is None, r.exc
    assert r.status == b"200 OK"
    assert r.body == "name=Jörg X;q=search".encode()


# ---- response forms ------------------------------------------------------------------------

@pytest.mark.parametrize("status,expected", [
    ("200", b"200 OK"), ("404", b"404 Not Found"), ('"201"', b"201 Created"),
    ('"299 Custom Thing"', b"299 Custom Thing"), ("599", b"599 Unknown"),
])
def test_status_number_or_string(tmp_path, status, expected):
    p = make_plugin(lua=lua_app(tmp_path, f"return function() return {status}, {{}}, 'x' end"))
    r = serve(p)
    assert r.status == expected


def test_headers_string_number_and_array(tmp_path):
    app = lua_app(tmp_path, """
    return function()
      return 200, {["Set-Cookie"] = {"a=1", "b=2"}, ["X-Num"] = 7, ["Content-Type"] = "text/plain"}, "x"
    end
    """)
    r = serve(make_plugin(lua=app))
    hs = r.req.headers
    assert (b"Set-Cookie", b"a=1") in hs and (b"Set-Cookie", b"b=2") in hs
    assert (b"X-Num", b"7") in hs and (b"Content-Type", b"text/plain") in hs


@pytest.mark.parametrize("body,expected", [
    ('"plain string"', b"plain string"),
    ('{"a", "b", "c"}', b"abc"),
    ('{}', b""),
    ('nil', b""),
    ('coroutine.wrap(function() coroutine.yield("x") coroutine.yield("") coroutine.yield("y") end)', b"xy"),
    ('(function() local i = 0; return function() i = i + 1; if i <= 3 then return "n" .. i end end end)()',
     b"n1n2n3"),
    ('coroutine.wrap(function() coroutine.yield(12) coroutine.yield(3.5) end)', b"123.5"),
])
def test_body_types(tmp_path, body, expected):
    app = lua_app(tmp_path, f"return function() return 200, {{}}, {body} end")
    r = serve(make_plugin(lua=app))
    assert r.exc is None
    assert r.status == b"200 OK"
    assert r.body == expected


def test_table_app_with_run(tmp_path):
    app = lua_app(tmp_path, """
    local M = {}
    function M.run(env) return 200, {}, "from run " .. env.PATH_INFO end
    return M
    """, name="app.ws")
    r = serve(make_plugin(lua=app), path="/p")
    assert r.body == b"from run /p"


def test_long_body_streams_in_slices(tmp_path):
    app = lua_app(tmp_path, """
    return function()
      return 200, {}, coroutine.wrap(function()
        for i = 1, 200 do coroutine.yield(string.rep("a", 1000)) end
      end)
    end
    """)
    r = serve(make_plugin(lua=app))
    assert r.exc is None and r.body == b"a" * 200000
    assert r.yields >= 3              # a generator: the core flushes between slices
    assert all(len(c) <= 40000 for c in r.req.chunks)


def test_slow_producer_is_flushed_as_it_goes(tmp_path):
    # a blocking producer: each chunk must not wait for the slice to fill up
    app = lua_app(tmp_path, """
    local socket_sleep = function(s)
      local t = os.clock() + s
      while os.clock() < t do end
    end
    return function()
      return 200, {}, coroutine.wrap(function()
        for i = 1, 4 do coroutine.yield("chunk" .. i) socket_sleep(0.05) end
      end)
    end
    """)
    r = serve(make_plugin(lua=app))
    assert r.body == b"chunk1chunk2chunk3chunk4"
    assert len(r.req.chunks) >= 3


def test_start_response_and_add_headers(tmp_path):
    app = lua_app(tmp_path, """
    return function(env)
      uwsgi.add_headers({["X-Extra"] = "1"})
      if env.PATH_INFO == "/sr" then
        uwsgi.start_response(202, {["X-SR"] = "yes"})
        return "started"
      end
      return 200, {}, "normal"
    end
    """)
    p = make_plugin(lua=app)
    core = FakeCore()
    r = serve(p, core, path="/sr")
    assert r.status == b"202 Accepted" and r.body == b"started"
    assert (b"X-SR", b"yes") in r.req.headers and (b"X-Extra", b"1") in r.req.headers
    r = serve(p, core, path="/n")
    assert r.status == b"200 OK" and r.body == b"normal"
    assert r.req.headers == [(b"X-Extra", b"1")]


# ---- errors ----------------------------------------------------------------------------------

def assert_500(r):
    assert r.exc is None
    assert r.status == b"500 Internal Server Error"
    assert r.body == lresp.ERROR_BODY


def test_error_in_app_is_500_with_traceback(tmp_path, capfd):
    app = lua_app(tmp_path, """
    local function inner() error("boom in the app") end
    return function() inner() end
    """)
    r = serve(make_plugin(lua=app), path="/err")
    assert_500(r)
    err = capfd.readouterr().err
    assert "boom in the app" in err and "stack traceback" in err and "GET /err" in err


def test_worker_survives_errors(tmp_path):
    app = lua_app(tmp_path, """
    return function(env)
      if env.PATH_INFO == "/bad" then error("x") end
      return 200, {}, "fine"
    end
    """)
    p = make_plugin(lua=app)
    core = FakeCore()
    assert_500(serve(p, core, path="/bad"))
    assert serve(p, core, path="/ok").body == b"fine"


@pytest.mark.parametrize("ret,needle", [
    ("200, nil, 'x'", "nil headers"),
    ("200, 'nope', 'x'", "string headers"),
    ("200, {[1] = 'x'}, 'x'", "header name 1 is a number"),
    ("200, {[true] = 'x'}, 'x'", "is a boolean"),
    ("200, {['Bad Name'] = 'x'}, 'x'", "invalid header name"),
    ("200, {['X'] = 'a\\r\\nInjected: 1'}, 'x'", "CR, LF"),
    ("200, {['X'] = {}}, 'x'", None),  # an empty array: no header line, valid
    ("200, {['X'] = function() end}, 'x'", "function value"),
    ("nil, {}, 'x'", "nil status"),
    ("'abc', {}, 'x'", "invalid status"),
    ("'20', {}, 'x'", "invalid status"),
    ("200, {}, true", "boolean body"),
    ("200, {}, {'a', {}}", "table at index 2"),
    ("200.5, {}, 'x'", "non-integer status"),
])
def test_bad_responses_are_500(tmp_path, capfd, ret, needle):
    app = lua_app(tmp_path, f"return function() return {ret} end")
    p = make_plugin(lua=app)
    core = FakeCore()
    r = serve(p, core)
    if needle is None:
        assert r.status == b"200 OK"
        return
    assert_500(r)
    assert needle in capfd.readouterr().err
    # the state is still usable
    assert serve(p, core).status == b"500 Internal Server Error"


def test_error_in_body_before_anything_is_500(tmp_path, capfd):
    app = lua_app(tmp_path, """
    return function()
      return 200, {}, coroutine.wrap(function() coroutine.yield("a") error("body boom") end)
    end
    """)
    r = serve(make_plugin(lua=app))
    assert_500(r)
    assert "body boom" in capfd.readouterr().err


def test_error_in_body_after_headers_truncates(tmp_path, capfd):
    app = lua_app(tmp_path, """
    return function()
      return 200, {}, coroutine.wrap(function()
        for i = 1, 100 do coroutine.yield(string.rep("b", 1000)) end
        error("late body boom")
      end)
    end
    """)
    r = serve(make_plugin(lua=app))
    assert r.status == b"200 OK"
    assert isinstance(r.exc, lresp.LuaBodyError)
    assert 0 < len(r.body) <= 100000
    err = capfd.readouterr().err
    assert "late body boom" in err and "truncated" in err


def test_body_yielding_a_table_is_an_error(tmp_path, capfd):
    app = lua_app(tmp_path, """
    return function()
      return 200, {}, coroutine.wrap(function() coroutine.yield({}) end)
    end
    """)
    assert_500(serve(make_plugin(lua=app)))
    assert "yielded a table" in capfd.readouterr().err


def test_load_errors_raise_apploaderror(tmp_path):
    with pytest.raises(AppLoadError, match="no such file"):
        make_plugin(lua=str(tmp_path / "missing.lua"))
    with pytest.raises(AppLoadError, match="syntax|expected|unexpected|near"):
        make_plugin(lua=lua_app(tmp_path, "return function( end", "syntax.lua"))
    with pytest.raises(AppLoadError, match="load time boom"):
        make_plugin(lua=lua_app(tmp_path, "error('load time boom')", "err.lua"))
    with pytest.raises(AppLoadError, match="must return the WSAPI app"):
        make_plugin(lua=lua_app(tmp_path, "return 42", "num.lua"))
    with pytest.raises(AppLoadError, match="without a run function"):
        make_plugin(lua=lua_app(tmp_path, "return {}", "tbl.lua"))
    with pytest.raises(AppLoadError, match="os.exit"):
        make_plugin(lua=lua_app(tmp_path, "os.exit(3)", "exit.lua"))


def test_bad_option_values_are_option_errors():
    # a usage error (exit 1), not an app that failed to load (exit 22)
    with pytest.raises(OptionValueError, match="lua-engine"):
        make_plugin(lua=str(EXAMPLES / "pippo.lua"), lua_engine="lua99")
    with pytest.raises(OptionValueError, match="lua-gc-freq"):
        make_plugin(lua=str(EXAMPLES / "pippo.lua"), lua_gc_freq=-1)
    with pytest.raises(OptionValueError, match="lua-max-memory"):
        make_plugin(lua=str(EXAMPLES / "pippo.lua"), lua_max_memory=-1)


def test_lazy_apps_checks_syntax_only(tmp_path):
    side = tmp_path / "side-effect"
    app = lua_app(tmp_path, f"io.open('{side}', 'w'):close() return function() return 200, {{}}, 'x' end")
    make_plugin(lua=app, lazy_apps=True)
    assert not side.exists()
    with pytest.raises(AppLoadError):
        make_plugin(lua=lua_app(tmp_path, "return function( end", "s.lua"), lazy_apps=True)


def test_memory_cap_gives_500_and_recovers(tmp_path, capfd):
    app = lua_app(tmp_path, """
    return function(env)
      if env.PATH_INFO == "/hog" then
        local t = {}
        for i = 1, 1e7 do t[i] = string.rep("x", 100) .. i end
      end
      return 200, {}, "small"
    end
    """)
    p = make_plugin(lua=app, lua_max_memory=8)
    core = FakeCore()
    assert_500(serve(p, core, path="/hog"))
    assert "not enough memory" in capfd.readouterr().err
    for _ in range(3):
        r = serve(p, core, path="/ok")
        assert r.status == b"200 OK" and r.body == b"small"
    assert_500(serve(p, core, path="/hog"))
    assert serve(p, core, path="/ok").body == b"small"


# ---- states, GC -------------------------------------------------------------------------------

def test_one_state_per_core(tmp_path):
    app = lua_app(tmp_path, """
    counter = 0
    return function()
      counter = counter + 1
      return 200, {}, tostring(counter) .. "/" .. uwsgi.mywid
    end
    """)
    p = make_plugin(lua=app)
    w = FakeWorker(wid=3, cores=2)
    c0, c1 = FakeCore(0, w), FakeCore(1, w)
    p.init_core(c0)
    p.init_core(c1)
    assert c0.state["lua"] is not c1.state["lua"]
    assert serve(p, c0).body == b"1/3"
    assert serve(p, c0).body == b"2/3"
    assert serve(p, c1).body == b"1/3"   # its own globals


@pytest.mark.parametrize("freq,requests,expected", [(1, 5, 5), (0, 5, 0), (2, 5, 2), (3, 9, 3)])
def test_gc_frequency(freq, requests, expected):
    p = make_plugin(lua=str(EXAMPLES / "pippo.lua"), lua_gc_freq=freq)
    core = FakeCore()
    p.init_core(core)
    st = core.state["lua"]
    before = st.gc_runs
    for _ in range(requests):
        serve(p, core)
    assert st.gc_runs - before == expected


def test_gc_full_collects(tmp_path):
    app = lua_app(tmp_path, """
    return function(env)
      local junk = {}
      for i = 1, 20000 do junk[i] = {i} end
      return 200, {}, string.format("%d", collectgarbage("count"))
    end
    """)
    p = make_plugin(lua=app, lua_gc_full=True)
    core = FakeCore()
    r1 = int(serve(p, core).body)
    for _ in range(5):
        r = int(serve(p, core).body)
    # with a full collection after each request the heap does not grow request after request
    assert r < r1 * 1.5


def test_lua_runs_outside_the_gil(tmp_path):
    # While a thread runs a long Lua loop, Python code in another thread keeps running: the GIL
    # is released while Lua runs (so --threads runs Lua in parallel). Not a timing bound: with the
    # GIL held, the main thread could not run a single iteration until the Lua call returned.
    app = lua_app(tmp_path, """
    return function()
      local x = 0
      for i = 1, 2e8 do x = x + i % 7 end
      return 200, {}, tostring(x)
    end
    """)
    p = make_plugin(lua=app)
    core = FakeCore()
    p.init_core(core)
    results = []
    t = threading.Thread(target=lambda: results.append(serve(p, core)))
    t.start()
    time.sleep(0.05)                      # the Lua loop is running now (or done on a fast box)
    ticks = 0
    while t.is_alive():
        ticks += 1
        time.sleep(0)
    t.join()
    assert results and results[0].status == b"200 OK"
    assert ticks > 10, ticks              # Python ran beside Lua


# ---- async waits ----------------------------------------------------------------------------

def test_async_sleep_arms_a_wait_and_suspends(tmp_path):
    app = lua_app(tmp_path, """
    return function()
      return 200, {}, coroutine.wrap(function()
        coroutine.yield("before;")
        uwsgi.async_sleep(0.2)
        coroutine.yield()
        coroutine.yield("after")
      end)
    end
    """)
    p = make_plugin(lua=app)
    with current_core(p) as (core, req):
        gen = p.request(req)
        assert gen is not None                 # a wait: the body is a generator
        assert req.body == b"before;"
        # armed in request(): left on the core, which runs the first step once it fires
        assert core.wait is not None and core.wait.timeout == pytest.approx(0.2)
        core.wait = None                       # as the worker does when it fires
        for _ in gen:
            assert core.wait is None
        assert req.body == b"before;after"     # the nil after the wait did not end the body


def test_wait_fd_read_arms_a_read_wait(tmp_path):
    import os
    r_fd, w_fd = os.pipe()
    try:
        app = lua_app(tmp_path, f"""
        return function()
          return 200, {{}}, coroutine.wrap(function()
            uwsgi.wait_fd_read({r_fd}, 3)
            coroutine.yield("")
            coroutine.yield("ready=" .. tostring(uwsgi.ready_fd()))
          end)
        end
        """)
        p = make_plugin(lua=app)
        from uwsgid.plugins import api
        with current_core(p) as (core, req):
            gen = p.request(req)
            # armed in request(): left on the core, which runs the first step once it fires
            assert core.wait.fd == r_fd and core.wait.events == api.Wait.READ and core.wait.timeout == 3
            core.wait = None
            core.ready_fd = r_fd
            list(gen)
            assert req.body == b"ready=%d" % r_fd
    finally:
        os.close(r_fd)
        os.close(w_fd)


# ---- the uwsgi module -------------------------------------------------------------------------

def test_uwsgi_module_basics(tmp_path, capfd):
    app = lua_app(tmp_path, """
    local u = require "uwsgi"
    return function()
      assert(u == uwsgi)
      u.log("hello", "from", 3)
      local rss, vsz = u.mem()
      local out = {
        type(u.version), tostring(u.mypid() > 0), tostring(u.micros() > 1e15),
        tostring(rss > 0 and vsz >= rss), tostring(u.async_id()), tostring(u.request_id()),
        tostring(u.mywid), type(u.reload), type(u.stop), type(u.connection_fd()),
      }
      return 200, {}, table.concat(out, ",")
    end
    """)
    r = serve(make_plugin(lua=app))
    assert r.body == b"string,true,true,true,0,0,1,function,function,number"
    assert "hello from 3" in capfd.readouterr().err


def test_req_input_read(tmp_path):
    app = lua_app(tmp_path, """
    return function() return 200, {}, uwsgi.req_input_read(4) .. "|" .. uwsgi.req_input_read() end
    """)
    r = serve(make_plugin(lua=app), method="POST", body=b"0123456789")
    assert r.body == b"0123|456789"


def test_api_error_is_a_clean_lua_error(tmp_path):
    app = lua_app(tmp_path, """
    return function()
      local ok, err = pcall(uwsgi.async_sleep, "not a number")
      return 200, {}, tostring(ok) .. ":" .. tostring(err)
    end
    """)
    r = serve(make_plugin(lua=app))
    assert r.body.startswith(b"false:uwsgi.async_sleep:")


# ---- load order, paths, RPC, signals ----------------------------------------------------------

def test_load_postload_order_and_lua_path(tmp_path):
    libdir = tmp_path / "lib"
    libdir.mkdir()
    (libdir / "mylib.lua").write_text("return { name = 'mylib' }")
    pre = lua_app(tmp_path, "order = (order or '') .. 'load;'", "pre.lua")
    post = lua_app(tmp_path, "order = order .. 'postload;'", "post.lua")
    app = lua_app(tmp_path, """
    order = order .. 'app;'
    local mylib = require "mylib"
    return function() return 200, {}, order .. mylib.name end
    """)
    p = make_plugin(lua=app, lua_load=[pre], lua_postload=[post], lua_path=[str(libdir)])
    assert serve(p).body == b"load;app;postload;mylib"


def test_debian_c_modules_load():
    # md5 (a C module under /usr/lib/<arch>/lua/5.1) needs RTLD_GLOBAL and Debian's cpath
    import os
    app_dir = os.environ.get("TMPDIR", "/tmp")
    path = os.path.join(app_dir, f"lua-cmod-{os.getpid()}.lua")
    with open(path, "w") as f:
        f.write("local md5 = require 'md5'\nlocal lfs = require 'lfs'\n"
                "return function() return 200, {}, md5.sumhexa('abc') .. ' ' .. type(lfs.currentdir()) end")
    try:
        assert serve(make_plugin(lua=path)).body == b"900150983cd24fb0d6963f7d28e17f72 string"
    finally:
        os.unlink(path)


def test_lua_rpc_roundtrip(tmp_path):
    pytest.importorskip("uwsgid.services.api")
    from uwsgid.services import api as svc
    app = lua_app(tmp_path, """
    uwsgi.register_rpc("lua_test_hello", function(a, b) return "hi " .. a .. "+" .. tostring(b) end)
    uwsgi.register_rpc("lua_test_boom", function() error("rpc boom") end)
    return function()
      local ok, err = pcall(uwsgi.call, "lua_test_boom")
      return 200, {}, uwsgi.call("lua_test_hello", "x", 2) .. "|" .. tostring(ok)
    end
    """)
    p = make_plugin(lua=app)
    core = FakeCore()
    r = serve(p, core)
    assert r.body == b"hi x+2|false"
    # Python calling the Lua function: runs in the current core's state (here: the fallback)
    assert svc.call("lua_test_hello", b"py", b"3") == b"hi py+3"


def test_lua_signal_handler_runs_in_the_state(tmp_path):
    pytest.importorskip("uwsgid.services.api")
    from lua_plugin import uwsgi_module
    app = lua_app(tmp_path, """
    got = "none"
    uwsgi.register_signal(17, "workers", function(sig) got = "signal " .. sig end)
    return function() return 200, {}, got end
    """)
    p = make_plugin(lua=app)
    with current_core(p) as (core, _):
        uwsgi_module._signal_wrappers[17](17)
    assert serve(p, core).body == b"signal 17"


def test_cache_table_forms(tmp_path):
    pytest.importorskip("uwsgid.services.api")
    from uwsgid.services import cache as cache_mod
    try:
        cache_mod.get_cache(b"luatest")
    except ValueError:
        cache_mod.create(cache_mod.parse_cache2("name=luatest,items=100"))
    app = lua_app(tmp_path, """
    return function()
      local C = "luatest"
      uwsgi.cache_clear(C)
      assert(uwsgi.cache_set("single", "s", 0, C))
      uwsgi.cache_update({ka = "1", kb = "2"}, 0, C)
      local t = uwsgi.cache_get({"ka", "kb", "kc"}, C)
      local e = uwsgi.cache_exists({"ka", "kc"}, C)
      uwsgi.cache_del({"ka"}, C)
      return 200, {}, table.concat({uwsgi.cache_get("single", C), tostring(t.ka), tostring(t.kb),
        tostring(t.kc), tostring(e.ka), tostring(e.kc), tostring(uwsgi.cache_get("ka", C))}, ",")
    end
    """)
    assert serve(make_plugin(lua=app)).body == b"s,1,2,nil,true,false,nil"


# ---- things that need their own process: engines, os.exit -------------------------------------

def _run_py(code: str, timeout: float = 60):
    import subprocess
    import sys

    from lua_helpers import ROOT
    env = dict(__import__("os").environ)
    env["PYTHONPATH"] = ":".join([str(ROOT), str(ROOT / "plugins" / "lua"), str(ROOT / "tests")])
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=str(ROOT))


PRELUDE = """
import uwsgid.config.core_options
from uwsgid.config import options as uopts
from lua_plugin.plugin import LuaPlugin
from lua_helpers import FakeCore, FakeRequest, run_request
p = LuaPlugin()
for o in p.options: uopts.declare(o)
def opts(**kw):
    o = uopts.Options()
    for k, v in kw.items():
        o.set(uopts.lookup(k.replace('_', '-')), v)
    return o
"""


@pytest.mark.parametrize("engine,version", [("lua51", "Lua 5.1"), ("luajit", "Lua 5.1")])
def test_engine_choice(tmp_path, engine, version):
    app = lua_app(tmp_path, """
    return function()
      return 200, {}, coroutine.wrap(function()
        coroutine.yield(_VERSION .. (jit and ' jit' or ''))
        for i = 1, 1000 do coroutine.yield("") end   -- the trampoline's clock path (no ffi on lua51)
        uwsgi.async_sleep(0.01) coroutine.yield()
      end)
    end
    """)
    r = _run_py(PRELUDE + f"""
p.configure(opts(lua={app!r}, lua_engine={engine!r}), None)
c = FakeCore(); p.init_core(c)
res = run_request(p, c, FakeRequest(c))
print(res.body.decode(), res.waits)
""")
    assert r.returncode == 0, r.stderr
    out, waits = r.stdout.strip().rsplit(" ", 1)
    assert waits == "1"
    assert out.startswith(version) and (out.endswith(" jit") == engine.startswith("luajit"))


def test_second_engine_in_one_process_is_refused():
    r = _run_py("""
from lua_plugin import engine
engine.load('luajit21')
try:
    engine.load('lua54')
except engine.EngineError as e:
    print('refused:', e)
""")
    assert "refused:" in r.stdout and "one Lua engine per process" in r.stdout


def test_os_exit_in_a_worker_is_logged_and_exits(tmp_path):
    app = lua_app(tmp_path, """
    return function(env)
      if env.PATH_INFO == "/exit" then os.exit(7) end
      return 200, {}, "alive"
    end
    """)
    r = _run_py(PRELUDE + f"""
p.configure(opts(lua={app!r}), None)
c = FakeCore(); p.init_core(c)
print(run_request(p, c, FakeRequest(c, path='/ok')).body.decode(), flush=True)
run_request(p, c, FakeRequest(c, path='/exit'))
print('not reached')
""")
    assert r.returncode == 7
    assert "alive" in r.stdout and "not reached" not in r.stdout
    assert "os.exit(7) called by the Lua app" in r.stderr


def test_waits_reach_the_core_through_run_request(tmp_path):
    app = lua_app(tmp_path, """
    return function()
      return 200, {}, coroutine.wrap(function()
        uwsgi.async_sleep(0.05) coroutine.yield()
        coroutine.yield("a")
        uwsgi.async_sleep(0.05) coroutine.yield("b")
        coroutine.yield("c")
      end)
    end
    """)
    r = serve(make_plugin(lua=app))
    assert r.body == b"abc" and r.waits == 2


def _open_paths():
    import os
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.add(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    return out


def test_master_loads_the_workers_states_before_fork(tmp_path):
    """As uWSGI: without --lazy-apps the app is loaded by the master, one state per thread,
    and the worker's threads take those states (what the app opened is inherited)."""
    held = tmp_path / "held-open.txt"
    held.write_text("x")
    app = lua_app(tmp_path, f"keep = io.open('{held}', 'r') loads = (loads or 0) + 1 "
                            "return function() return 200, {}, tostring(loads) .. ' ' .. uwsgi.mywid end")
    p = make_plugin(lua=app, threads=2)
    assert len(p._prefork) == 2 and str(held) in _open_paths()
    core = FakeCore()
    core.worker = types.SimpleNamespace(id=3)
    p.init_core(core)
    assert len(p._prefork) == 1 and core.state["lua"].check is False
    assert serve(p, core).body == b"1 3"        # loaded once (in the master), the worker's id


def test_lazy_apps_check_state_is_released(tmp_path):
    held = tmp_path / "held-open.txt"
    held.write_text("x")
    app = lua_app(tmp_path, f"keep = io.open('{held}', 'r') return function() return 200, {{}}, 'x' end")
    p = make_plugin(lua=app, lazy_apps=True)
    # --lazy-apps: the master only checked the syntax, in a throwaway state that is gone
    assert not p._prefork and str(held) not in _open_paths()
    assert serve(p).body == b"x"


def test_luac_bytecode_app(tmp_path):
    from lua_plugin import engine
    src = lua_app(tmp_path, "return function(env) return 200, {}, 'from bytecode ' .. env.PATH_INFO end", "src.lua")
    luac = tmp_path / "app.luac"
    rt = engine.load("luajit21").LuaRuntime(encoding=None)
    dump = rt.eval(b"function(p) return string.dump(assert(loadfile(p))) end")
    luac.write_bytes(dump(src.encode()))
    assert serve(make_plugin(lua=str(luac)), path="/bc").body == b"from bytecode /bc"


def test_postfork_worker_runs_only_in_workers(tmp_path):
    marker = tmp_path / "postfork-ran"
    post = lua_app(tmp_path, f"io.open('{marker}', 'a'):write('x') postfork = true", "postfork.lua")
    app = lua_app(tmp_path, "return function() return 200, {}, tostring(postfork) end")
    p = make_plugin(lua=app, lua_postfork_worker=[post])
    assert not marker.exists()            # not in the master's load check
    assert serve(p).body == b"true"
    assert marker.read_text() == "x"


def test_lua_load_without_app_has_no_app(tmp_path):
    lib = lua_app(tmp_path, "loaded_only = true", "only.lua")
    p = make_plugin(lua_load=[lib])
    assert not p.has_app()
    core = FakeCore()
    p.init_core(core)                     # states exist (e.g. for RPC functions)
    assert "lua" in core.state
    assert LuaPlugin().has_app() is False


def test_async_connect_and_logvar(tmp_path):
    import socket
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    try:
        app = lua_app(tmp_path, f"""
        return function()
          uwsgi.set_logvar("who", "lua")
          local fd = uwsgi.async_connect("127.0.0.1:{port}")
          return 200, {{}}, coroutine.wrap(function()
            uwsgi.wait_fd_write(fd, 5)
            coroutine.yield()
            local ok = uwsgi.is_connected(fd)
            uwsgi.close(fd)
            coroutine.yield("connected=" .. tostring(ok) .. " bad=" .. tostring(uwsgi.async_connect("nope")))
          end)
        end
        """)
        r = serve(make_plugin(lua=app))
        assert r.body == b"connected=true bad=nil"
        assert r.req.logvars == {"who": "lua"}
    finally:
        srv.close()


def test_run_script_for_mules(tmp_path, capfd):
    from lua_plugin import run_script
    script = lua_app(tmp_path, """
    uwsgi.log("mule script with", type(uwsgi.register_rpc), type(uwsgi.cache_get))
    print("printed by the script")
    """, "mule.lua")
    st = run_script(script)
    assert st is not None
    err = capfd.readouterr().err
    assert "mule script with function function" in err and "printed by the script" in err
    from lua_plugin.state import LuaLoadError
    with pytest.raises(LuaLoadError, match="script boom"):
        run_script(lua_app(tmp_path, "error('script boom')", "bad.lua"))
