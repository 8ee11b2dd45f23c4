"""Loading uwsgi.native, the plugin's Lua C module (plugins/lua/uwsgi_native.c), into a lua_State.

The build makes one shared object per Lua ABI (build/lib/uwsgi_lua_native501.so for LuaJIT and
Lua 5.1, ...504.so for Lua 5.4), in the directory of the _uwsgi module, which is on sys.path in
./uwsgi and under the tests. Each state loads it with package.loadlib into package.preload, then
`require "uwsgi.native"`: its lua_* symbols resolve against the lupa engine of the process
(imported RTLD_GLOBAL by engine.py, one engine per process).

When it cannot load (not built, an engine of another ABI, a dlopen error), the state runs the
plugin's Lua fallback for the same work, and the process says so once in its log."""

from __future__ import annotations

import os
import sys

from uwsgid.util.log import log

# lupa engine -> the ABI its module is built for (lua_abi.h)
ABI = {"luajit20": 501, "luajit21": 501, "lua51": 501, "lua54": 504}
MODULE = "uwsgi.native"
ENTRY = "luaopen_uwsgi_native"

_LOADER = (b"function(path) local f, err = package.loadlib(path, '" + ENTRY.encode() + b"')"
           b" if not f then return nil, err end"
           b" package.preload['" + MODULE.encode() + b"'] = f"
           b" local ok, m = pcall(require, '" + MODULE.encode() + b"')"
           b" if not ok then package.preload['" + MODULE.encode() + b"'] = nil return nil, m end"
           b" return m end")

_reported: set[str] = set()     # engines whose fallback was logged (once per process)


def file_name(engine: str) -> str | None:
    abi = ABI.get(engine)
    return f"uwsgi_lua_native{abi}.so" if abi else None


def find(engine: str) -> tuple[str | None, str]:
    """(path of the module for this engine, None) or (None, why not)."""
    name = file_name(engine)
    if name is None:
        return None, f"no build of it for lupa.{engine} (it is built for {', '.join(sorted(ABI))})"
    from uwsgid.util.binary import BUILD
    dirs = [BUILD.get("lib_dir") or ""] + list(sys.path)
    for d in dirs:
        path = os.path.join(d or ".", name)
        if d and os.path.isfile(path):
            return path, ""
    return None, f"{name} not found (run uwsgiconfig.py --build)"


def load(rt, engine: str):
    """The module's table in LuaRuntime rt, or None (the fallback; logged once per process)."""
    path, why = find(engine)
    if path is not None:
        res = rt.eval(_LOADER)(os.fsencode(path))
        mod, err = res if isinstance(res, tuple) else (res, None)
        if mod is not None:
            return mod
        why = err.decode("utf-8", "replace") if isinstance(err, bytes) else str(err)
    if engine not in _reported:
        _reported.add(engine)
        log(f"[uwsgi-lua] the C module {MODULE} is not loaded ({why}): the request path runs in Lua")
    return None
