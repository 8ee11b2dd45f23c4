"""The Lua plugin's C module uwsgi.native (plugins/lua/uwsgi_native.c): loaded in each lupa engine
it is built for, its env and header walk fed bad input, the `uwsgi` functions it provides, and
the Lua fallback when it is absent."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap

import pytest
from lua_helpers import FakeCore, FakeRequest, run_request

import uwsgid.config.core_options  # noqa: F401  (declares the core options)
from lua_plugin import native
from lua_plugin.options import Settings
from lua_plugin.plugin import LuaPlugin
from uwsgid.config import options as uopts

for _opt in LuaPlugin.options:
    try:
        uopts.declare(_opt)
    except ValueError:
        pass

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

if native.find("luajit21")[0] is None:
    pytest.skip("uwsgi.native is not built (uwsgiconfig.py --build)", allow_module_level=True)


def block(pairs) -> bytes:
    return b"".join(struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v for k, v in pairs)


def plugin_for(tmp_path, code: str, **opts) -> LuaPlugin:
    app = tmp_path / "app.lua"
    app.write_text(textwrap.dedent(code))
    o = uopts.Options()
    o.set(uopts.lookup("lua"), str(app))
    for name, value in opts.items():
        o.set(uopts.lookup(name.replace("_", "-")), value)
    p = LuaPlugin()
    p.configure(o, None)
    return p


def serve(p, core, vars_block=None, **kw):
    if "lua" not in core.state:
        p.init_core(core)
    req = FakeRequest(core, **kw)
    req.vars_block = vars_block
    return run_request(p, core, req)


ENV_DUMP = """
return function(env)
  local keys = {}
  for k, v in pairs(env) do if type(v) == "string" then keys[#keys + 1] = k end end
  table.sort(keys)
  local out = {}
  for _, k in ipairs(keys) do out[#out + 1] = k .. "=" .. env[k] end
  return 200, {["Content-Type"] = "text/plain"}, table.concat(out, "\\n")
end
"""


@pytest.fixture
def state():
    from lua_plugin.state import LuaState
    return LuaState(Settings())


# ---- the module in this process's engine (LuaJIT 2.1) ---------------------------------------

def test_loaded_with_require(state):
    assert state.native is not None
    assert state.native.abi == 501
    assert state.rt.eval(b"require('uwsgi.native') == package.loaded['uwsgi.native']") is True
    assert state.rt.eval(b"require('uwsgi.native').abi") == 501
    # its pure functions replaced the Python ones in the uwsgi table
    assert state.rt.eval(b"uwsgi.mypid()") == os.getpid()
    assert state.rt.eval(b"uwsgi.micros == require('uwsgi.native').api.micros") is True


def test_env_from_block(tmp_path):
    p = plugin_for(tmp_path, ENV_DUMP)
    core = FakeCore()
    huge = b"x" * 65535                       # the largest value a uwsgi var can carry
    raw = b"\xff\xfe\x80caf\xc3"              # not UTF-8: passed through as bytes
    pairs = [(b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", b"/p"), (b"HTTP_X_HUGE", huge), (b"HTTP_X_RAW", raw)]
    r = serve(p, core, vars_block=block(pairs))
    assert r.status == b"200 OK", r.body
    lines = dict(line.split(b"=", 1) for line in r.body.split(b"\n"))
    assert lines[b"HTTP_X_HUGE"] == huge and lines[b"HTTP_X_RAW"] == raw
    # the CGI defaults and APP_PATH, as without the module
    assert lines[b"QUERY_STRING"] == b"" and lines[b"CONTENT_LENGTH"] == b"" and b"APP_PATH" in lines
    # a NUL inside a value is data, not a separator
    r = serve(p, core, vars_block=block([(b"PATH_INFO", b"/n"), (b"HTTP_X_NUL", b"a\0b")]))
    assert b"HTTP_X_NUL=a\0b" in r.body


@pytest.mark.parametrize("bad", [
    block([(b"A", b"1")])[:-1],                      # the value runs past the end
    block([(b"A", b"1")])[:-2],                      # the value length cut short
    b"\x05",                                         # a key length cut short
    b"\xff\xff" + b"k",                              # a key longer than the block
])
def test_cut_vars_block_keeps_the_complete_vars(tmp_path, bad):
    # the core checks a packet before dispatch; the C parser still stops cleanly at a var that
    # runs past the block, keeping the ones before it (as runtime.lua's parser does)
    p = plugin_for(tmp_path, ENV_DUMP)
    core = FakeCore()
    r = serve(p, core, vars_block=block([(b"PATH_INFO", b"/ok")]) + bad)
    assert r.status == b"200 OK", r.body
    names = [line.split(b"=", 1)[0] for line in r.body.split(b"\n")]
    assert b"PATH_INFO" in names and b"A" not in names and b"k" not in names
    assert serve(p, core, vars_block=block([(b"PATH_INFO", b"/ok")])).status == b"200 OK"


def test_env_and_headers_direct_bad_input(state):
    env, headers = state.native.env, state.native.headers
    e = env(block([(b"A", b"1"), (b"PATH_INFO", b"/p")]), b"/a")
    assert e[b"A"] == b"1" and e[b"PATH_INFO"] == b"/p" and e[b"APP_PATH"] == b"/a"
    assert env(b"", b"")[b"PATH_INFO"] == b"" and env(b"\x01", None)[b"APP_PATH"] == b""
    with pytest.raises(Exception, match="must be a string"):
        env(None, b"")
    t = state.rt.eval
    assert headers(t(b"{A = 'x', B = 2}")) in (b"A\0x\0B\x002", b"B\x002\0A\0x")
    assert headers(t(b"{}")) == b""
    for bad in (b"{['Bad Name'] = 'x'}", b"{[1] = 'x'}", b"{A = 'x\\r\\ny'}", b"{A = 'x\\0'}",
                b"{A = true}", b"{A = {'ok', {}}}", b"{[''] = 'x'}"):
        assert headers(t(bad)) is None, bad
    many = t(b"(function() local h = {} for i = 1, 500 do h['H' .. i] = ('v'):rep(30) end return h end)()")
    flat = headers(many)
    assert flat.count(b"\0") == 999 and len(flat) > 2048        # past the stack buffer
    assert headers(t(b"{}"), t(b"{{'X-E', 'e'}}")) == b"X-E\0e"
    assert headers(t(b"{}"), t(b"{{'X E', 'e'}}")) is None


def _reference_env(b: bytes) -> dict:
    """The complete vars of a block, as the C parser must read them."""
    env, pos = {}, 0
    while len(b) - pos >= 4:
        kl = b[pos] | b[pos + 1] << 8
        if len(b) - pos - 2 < kl + 2:
            break
        vl = b[pos + 2 + kl] | b[pos + 3 + kl] << 8
        if len(b) - pos - 4 - kl < vl:
            break
        env[b[pos + 2:pos + 2 + kl]] = b[pos + 4 + kl:pos + 4 + kl + vl]
        pos += 4 + kl + vl
    return env


DEFAULTS = (b"APP_PATH", b"SCRIPT_NAME", b"PATH_INFO", b"QUERY_STRING", b"CONTENT_TYPE", b"CONTENT_LENGTH")


def test_env_fuzz_random_and_cut_blocks(state):
    import random
    rnd = random.Random(1234)
    env = state.native.env
    valid = block([(b"K%d" % i, bytes(rnd.randrange(256) for _ in range(rnd.randrange(40)))) for i in range(12)])
    cases = [valid[:n] for n in range(len(valid) + 1)]
    cases += [bytes(rnd.randrange(256) for _ in range(rnd.randrange(64))) for _ in range(1500)]
    for _ in range(1500):            # a valid block with a few bytes changed (lengths included)
        b = bytearray(valid)
        for _ in range(rnd.randrange(1, 4)):
            b[rnd.randrange(len(b))] = rnd.randrange(256)
        cases.append(bytes(b))
    for b in cases:
        got = dict(env(b, b"/app").items())
        want = _reference_env(b)
        for k in DEFAULTS:
            want.setdefault(k, b"/app" if k == b"APP_PATH" else b"")
        want[b"APP_PATH"] = b"/app"
        assert got == want, b


def test_headers_fuzz_against_the_rules(state):
    import random
    rnd = random.Random(99)
    make = state.rt.eval(b"function(k, v) return {[k] = v} end")
    alphabet = b"aZ09-_!~ :\r\n\0\x7f\xc3\xa9\t\"(),/;<=>?@[]{}"
    token = set(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    for _ in range(3000):
        k = bytes(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 6)))
        v = bytes(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 6)))
        ok = bool(k) and all(c in token for c in k) and not any(c in v for c in b"\r\n\0")
        got = state.native.headers(make(k, v))
        assert (got == k + b"\0" + v) if ok else got is None, (k, v, got)


@pytest.mark.parametrize("ret,needle", [
    ("200, {['Bad Name'] = 'x'}, 'x'", "invalid header name"),
    ("200, {['X'] = 'a\\r\\nInjected: 1'}, 'x'", "CR, LF"),
    ("'abc', {}, 'x'", "invalid status"),
])
def test_bad_responses_are_500_with_the_lua_message(tmp_path, capfd, ret, needle):
    p = plugin_for(tmp_path, f"return function() return {ret} end")
    core = FakeCore()
    r = serve(p, core)
    assert r.status == b"500 Internal Server Error"
    assert needle in capfd.readouterr().err


def test_pure_api_functions(state):
    ev = state.rt.eval
    rss, vsz = ev(b"uwsgi.mem()")
    assert 0 < rss <= vsz
    assert abs(ev(b"uwsgi.micros()") / 1e6 - __import__("time").time()) < 5
    assert ev(b"uwsgi.async_connect('nonsense')") is None
    assert ev(b"uwsgi.async_connect('/nonexistent/socket')") is None
    assert ev(b"uwsgi.is_connected(-1)") is False
    with pytest.raises(Exception, match="uwsgi.close"):
        ev(b"uwsgi.close('x')")


def test_fallback_when_the_module_is_absent(tmp_path, capfd, monkeypatch):
    monkeypatch.setattr(native, "_reported", set())
    monkeypatch.setattr(native, "file_name", lambda engine: "uwsgi_lua_native_missing.so")
    p = plugin_for(tmp_path, ENV_DUMP)
    core = FakeCore()
    p.init_core(core)
    assert core.state["lua"].native is None
    assert core.state["lua"].rt.eval(b"uwsgi.mypid()") == os.getpid()   # the Python one
    err = capfd.readouterr().err
    assert err.count("C module uwsgi.native is not loaded") == 1 and "not found" in err
    r = serve(p, core, vars_block=block([(b"PATH_INFO", b"/f")]))
    assert r.status == b"200 OK" and b"PATH_INFO=/f" in r.body
    r = serve(p, FakeCore(), path="/g")
    assert b"PATH_INFO=/g" in r.body
    p2 = plugin_for(tmp_path, "return function() return 200, {['Bad Name'] = 'x'}, 'x' end")
    r = serve(p2, FakeCore())
    assert r.status == b"500 Internal Server Error"
    assert "invalid header name" in capfd.readouterr().err


# ---- every engine (one per process: a child each) --------------------------------------------

CHILD = r"""
import json, struct, sys
sys.path[:0] = sys.argv[2].split(":")
import uwsgid.config.core_options
from lua_helpers import FakeCore, FakeRequest, run_request
from lua_plugin.plugin import LuaPlugin
from uwsgid.config import options as uopts
for o in LuaPlugin.options:
    try: uopts.declare(o)
    except ValueError: pass
opts = uopts.Options()
opts.set(uopts.lookup("lua"), sys.argv[3])
opts.set(uopts.lookup("lua-engine"), sys.argv[1])
p = LuaPlugin(); p.configure(opts, None)
core = FakeCore(); p.init_core(core)
st = core.state["lua"]
out = {"native": st.native is not None and int(st.native.abi)}
req = FakeRequest(core, path="/hello")
out["http"] = [run_request(p, core, req).status.decode(), req.body.decode()]
req = FakeRequest(core, path="/x")
req.vars_block = b"".join(struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
                          for k, v in [(b"PATH_INFO", b"/blk"), (b"REQUEST_METHOD", b"GET")])
out["block"] = [run_request(p, core, req).status.decode(), req.body.decode()]
# a second state loads the plugin's Lua files from the first one's bytecode, line info kept
from lua_plugin.state import LuaState, _BYTECODE
st2 = LuaState(st.settings)
st2.load_app(sys.argv[3])
out["bytecode"] = sorted(_BYTECODE)
out["second"] = st2.rt.eval(b"debug.getinfo(uwsgi.add_headers, 'S').short_src .. ':' .. "
                            b"debug.getinfo(uwsgi.add_headers, 'S').linedefined").decode()
print("RESULT " + json.dumps(out))
"""


@pytest.mark.parametrize("engine,abi", [("luajit21", 501), ("lua51", 501), ("lua54", 504), ("lua53", None)])
def test_each_engine(engine, abi):
    import importlib.util
    if importlib.util.find_spec(f"lupa.{engine}") is None:     # found, not imported: one engine per process
        pytest.skip(f"lupa has no {engine} engine here")
    paths = ":".join([ROOT, os.path.join(ROOT, "tests"), os.path.join(ROOT, "plugins", "lua"),
                      os.path.join(ROOT, "build", "lib")])
    proc = subprocess.run([sys.executable, "-c", CHILD, engine, paths, os.path.join(ROOT, "examples", "pippo.lua")],
                          capture_output=True, text=True, timeout=60)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert line, proc.stdout + proc.stderr
    out = json.loads(line[0][7:])
    assert out["native"] == (abi or False)
    assert out["http"][0] == "200 OK" and "PATH_INFO: /hello" in out["http"][1]
    assert out["block"][0] == "200 OK" and "PATH_INFO: /blk" in out["block"][1]
    assert out["bytecode"] == ["output.lua", "runtime.lua", "uwsgi_table.lua"]
    assert out["second"].startswith("lua_plugin/runtime.lua:") and not out["second"].endswith(":0")
    fallback = "C module uwsgi.native is not loaded" in proc.stderr
    assert fallback == (abi is None), proc.stderr


# ---- the real server (./uwsgi: the module found in the build's lib_dir) ------------------------

SERVER_APP = """
return function(env)
  if env.PATH_INFO == "/bad" then return 200, {["Bad Name"] = "x"}, "x" end
  local body = table.concat({env.PATH_INFO, env.HTTP_X_RAW or "-", tostring(uwsgi.mypid()),
                             tostring(uwsgi.worker_id())}, " ")
  return 200, {["Content-Type"] = "text/plain", ["X-N"] = 7}, body
end
"""


@pytest.mark.parametrize("engine,native_loaded", [("luajit21", True), ("lua53", False)])
def test_server_uwsgi_protocol(tmp_path, engine, native_loaded):
    import importlib.util

    from helpers import UWSGI, Server, free_port, uwsgi_http_get, uwsgi_request
    if not os.path.exists(UWSGI):
        pytest.skip("./uwsgi is not built")
    if importlib.util.find_spec(f"lupa.{engine}") is None:
        pytest.skip(f"lupa has no {engine} engine here")
    app = tmp_path / "app.lua"
    app.write_text(SERVER_APP)
    port = free_port()
    with Server(["--socket", f"127.0.0.1:{port}", "--lua", str(app), "--lua-engine", engine,
                 "--master", "--processes", "1"], port) as srv:
        status, body = uwsgi_http_get(port, "/p", 6, headers={"X-Raw": "\u00e9t\u00e9"})
        assert status == 200, body
        path, raw, pid, wid = body.split(b" ")
        assert path == b"/p" and raw == "\u00e9t\u00e9".encode() and int(pid) > 0 and wid == b"1"
        answer = uwsgi_request(port, {"REQUEST_METHOD": "GET", "PATH_INFO": "/bad", "REQUEST_URI": "/bad"},
                               modifier1=6)
        assert answer.startswith(b"HTTP/1.1 500"), answer
        assert uwsgi_http_get(port, "/again", 6)[0] == 200     # the worker lives on
        log = srv.wait_log("invalid header name")
    assert ("C module uwsgi.native is not loaded" in log) == (not native_loaded), log
