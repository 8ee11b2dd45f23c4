"""Lua code in every request phase: the provider the routing's `lua:` / `hook:` / `hooks:` actions
call (uwsgid.plugins.code), and --lua-hooks FILE, a Lua file returning a table of functions:

    return {
      access = function(r)                 -- before the app: deny, answer, rewrite, wait
        if r.headers["X-Token"] ~= "secret" then return 401 end
        r.ctx.user = "alice"               -- the app sees it (WSGI environ["uwsgi.ctx"], env.ctx)
      end,
      response = function(r) r.response_headers["X-Frame-Options"] = "DENY" end,
      log = function(r) r:log(r.status .. " " .. r.bytes_sent) end,
      hooks = { name = function(r) ... end },    -- hook:name in routes
      vars = { country = function(r) return r.headers["CF-IPCountry"] end },  -- ${hook[country]}
    }

A phase may hold a list of functions, run in order. A hook runs in a coroutine of the thread's
lua_State: `uwsgi.async_sleep(1); coroutine.yield()` (or a cosocket) in an access hook waits
without holding the worker under --async. The request object (hooks.lua) reaches the request
through the Bridge below, never as a Python object pushed per request (lupa bug #294).
"""

from __future__ import annotations

import os

from uwsgid.plugins import code

_HOOKS_LUA = "hooks.lua"


class LuaHookError(code.HookError):
    """The Lua hook raised: the message is its Lua traceback (the log shows it alone)."""

    own_traceback = True


def _str(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


class Bridge:
    """The Python functions hooks.lua's request object calls, over the hook call in progress
    (one per lua_State: only one core runs Lua at a time)."""

    def __init__(self):
        self.hc = None

    def table(self, st):
        """One Python callable, op(name, ...), and the names: each Python object pushed into Lua
        costs the state's heap ~300 bytes (hooks.lua makes a small closure per name)."""
        hc = lambda: self.hc    # noqa: E731
        t = {
            b"var": lambda name: hc().var(name),
            b"set_var": lambda name, value=None: hc().set_var(name, value),
            b"var_names": lambda: b"\0".join(hc().var_names()),
            b"header": lambda name: hc().header(name),
            b"set_header": lambda name, value=None: hc().set_header(name, value),
            b"ctx_get": lambda key: ctx_value(hc().ctx.get(_str(key))),
            b"ctx_set": lambda key, value=None: ctx_store(hc().ctx, key, value),
            b"rh_get": lambda name: hc().response_header(name),
            b"rh_set": lambda name, value=None: hc().set_response_header(name, value),
            b"rh_add": lambda name, value: hc().add_response_header(name, value),
            b"rh_list": lambda: b"\0".join(b"%b\0%b" % pair for pair in hc().response_headers()),
            b"set_status": lambda value: hc().set_status(_status(value)),
            b"fact": lambda name: _fact(hc().fact(_str(name))),
            b"log": lambda msg: hc().log(msg),
            b"answer": lambda status, flat, body: hc().answer(_status(status), _pairs(flat), body),
            b"redirect": lambda url, status=302: hc().redirect(url, int(status)),
            b"goto_label": lambda label: hc().goto(label),
            b"decided": lambda: hc().outcome is not None,
        }

        def op(name, *args):
            return t[name](*args)
        return op, st.table_from(sorted(t))


def ctx_value(value):
    """A ctx value as Lua gets it: strings as bytes, numbers and booleans as they are."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, (bytes, int, float, bool)):
        return value
    return None


def ctx_store(ctx: dict, key, value) -> None:
    key = _str(key)
    if value is None:
        ctx.pop(key, None)
    else:
        ctx[key] = _str(value)


def _fact(value):
    return value.encode("latin-1") if isinstance(value, str) else value


def _status(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _pairs(flat) -> list:
    if not flat:
        return []
    parts = flat.split(b"\0")
    return list(zip(parts[0::2], parts[1::2]))


class _Runner:
    __slots__ = ("R", "bridge")

    def __init__(self, st):
        from .state import _lua_code
        self.bridge = Bridge()
        load = st.rt.eval(b"function(code, name) return assert((loadstring or load)(code, '@lua_plugin/' .. name)) end")
        op, names = self.bridge.table(st)
        self.R = load(_lua_code(_HOOKS_LUA), _HOOKS_LUA.encode())(op, names)


def runner(st) -> _Runner:
    r = getattr(st, "hook_runner", None)
    if r is None:
        r = st.hook_runner = _Runner(st)
    return r


def _key(ref) -> tuple:
    """A provider ref -> (kind, a, b) for hooks.lua's resolve."""
    if isinstance(ref, tuple):
        kind = ref[0]
        if kind == "rpc":
            return b"rpc", b"", ref[1].encode() if isinstance(ref[1], str) else ref[1]
        return kind.encode(), os.fsencode(ref[1]), ref[2].encode()
    path, _, fn = ref.rpartition(":")
    return b"ref", os.fsencode(os.path.abspath(path)), fn.encode()


def _outcome(hc, res):
    kind = res[0]
    if kind == b"error":
        raise LuaHookError(_str(res[1]) if len(res) > 1 else "error")
    v1 = _status(res[1]) if len(res) > 1 else None
    v2 = res[2] if len(res) > 2 else None
    v3 = res[3] if len(res) > 3 else None
    if hc.outcome is None and (v2 is not None or v3 is not None) and v1 is not None:
        hc.answer(v1, _pairs(v2), v3 or b"")
    return code.outcome(hc, v1)


class Provider:
    """uwsgid.plugins.code's "lua" provider: runs in the current core's lua_State."""

    def __init__(self, plugin):
        self.plugin = plugin

    def _state(self, req):
        core = req.core
        st = core.state.get("lua") if core is not None else None
        if st is None and core is not None and self.plugin.settings is not None:
            self.plugin.init_core(core)
            st = core.state.get("lua")
        if st is None:
            raise LuaHookError("no lua_State on this core: the Lua plugin is not set up")
        return st

    def call(self, ref, hc):
        req = hc.req
        st = self._state(req)
        run = runner(st)
        slot = req.core.id
        kind, a, b = _key(ref)
        run.bridge.hc = hc
        st.req = req
        res = run.R.call(kind, a, b, slot)
        if not isinstance(res, tuple):
            res = (res,)
        if res[0] == b"wait":
            return self._pending(st, run, hc, slot)
        return _outcome(hc, res)

    def _pending(self, st, run, hc, slot):
        done = False
        try:
            while True:
                run.bridge.hc = hc
                st.req = hc.req
                res = run.R.resume(slot)
                if not isinstance(res, tuple):
                    res = (res,)
                if res[0] != b"wait":
                    done = True
                    return _outcome(hc, res)
                yield       # the core suspends on the wait the hook armed, or gives a turn
        finally:
            if not done:
                run.R.abandon(slot)

    def value(self, ref, hc) -> bytes:
        st = self._state(hc.req)
        run = runner(st)
        run.bridge.hc = hc
        st.req = hc.req
        kind, a, b = _key(ref)
        return bytes(run.R.value(kind, a, b))


def configure(plugin, opts) -> None:
    """At plugin configure: the provider; --lua-hooks inspected (its phases, hooks and vars
    registered); the `lua:` routes' files and functions checked, one line naming the route."""
    from uwsgid.plugins.contract import AppLoadError, OptionValueError
    code.provide("lua", Provider(plugin))
    files = [os.path.abspath(f) for f in opts.get("lua-hooks", None) or ()]
    wanted = [(ref, where) for lang, ref, where in code.WANTED if lang == "lua"]
    if not files and not wanted:
        return
    from .state import LuaState
    st = LuaState(plugin.settings, check=True)
    R = runner(st).R
    inspect = st.rt.eval(b"function(f, p) local ok, a, b, c = pcall(f, p); return ok, a, b, c end")
    for path in files:
        if not os.path.isfile(path):
            raise AppLoadError(f"--lua-hooks {path}: no such file")
        ok, phases, names, vnames = inspect(R.inspect, os.fsencode(path))
        if not ok:
            raise AppLoadError(f"--lua-hooks {path}: {_str(phases)}")
        for p in filter(None, phases.split(b"\0")):
            code.register("lua", ("phase", path, p.decode()), phase=p.decode())
        for n in filter(None, names.split(b"\0")):
            code.register("lua", ("name", path, n.decode()), name=n.decode())
        for n in filter(None, vnames.split(b"\0")):
            code.register("lua", ("var", path, n.decode()), var=n.decode())
    check = st.rt.eval(b"""function(R, path, fn)
        local ok, f = pcall(loadfile, path)
        if not ok or not f then return tostring(f) end
        local ok2, t = pcall(f)
        if not ok2 then return tostring(t) end
        if type(t) ~= "table" then t = _G end
        if type(t[fn]) ~= "function" then return path .. " defines no function " .. fn end
        return nil
    end""")
    for ref, where in wanted:
        kind, a, b = _key(ref)
        if not os.path.isfile(a):
            raise OptionValueError(f"route action {where}: {os.fsdecode(a)}: no such file")
        problem = check(R, a, b)
        if problem is not None:
            raise OptionValueError(f"route action {where}: {_str(problem)}")
