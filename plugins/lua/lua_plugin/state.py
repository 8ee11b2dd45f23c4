"""One lua_State (a lupa LuaRuntime): creation, package paths, the plugin's Lua files (output.lua,
runtime.lua, uwsgi_table.lua: the shims, the request path, the `uwsgi` table), loading files, and
the per-request hooks Lua calls back (input, log, exit).

A state serves one thread: its async cores share it (as uWSGI's Lua plugin does since 2.1: one
lua_State per thread, the async cores as its Lua threads), each core's streamed body kept in its
slot by runtime.lua. Only one core runs Lua at a time, so the request being served is simply
`state.req`, set by response.py each time a core enters Lua.
"""

from __future__ import annotations

import os
import sys
import threading

from uwsgid.util.log import log

from . import engine as _engine
from . import native as _native
from . import uwsgi_module
from .options import Settings
from .response import flush_now

# The default GC (an incremental step after each request) completes every FULL_EVERY-th run's
# cycle at once. Steps alone sweep a cycle's garbage while the next requests allocate, which
# scatters the state's objects over its whole allocator segment: every page of it ends up
# written, so private in a worker (~250 KB a state on pippo.lua). Freeing the garbage at once
# lets the next requests reuse the same chunks: ~170 KB, for one full collection every 8 runs
# (~25 us on pippo.lua's state, ~3 us a request). Every 4th: ~155 KB for twice the CPU.
# A full collection costs in proportion to the live heap: a state over FULL_UNDER_KB (a large
# app: Sputnik's is megabytes) keeps to steps, where the pages written are its heap anyway.
FULL_EVERY = 8
FULL_UNDER_KB = 256


class LuaLoadError(Exception):
    """A Lua file could not be loaded or run (message = the Lua error and traceback)."""


def _lua_version(engine_name: str) -> str:
    """'5.1' for luajit*/lua51, '5.4' for lua54...: which system Lua directories fit."""
    name = _engine.canonical(engine_name)
    if name.startswith("luajit"):
        return "5.1"
    return f"{name[3]}.{name[4:]}"


def _multiarch_dirs(version: str) -> list[str]:
    # the interpreter's own multiarch triplet: sysconfig's MULTIARCH without loading sysconfig
    # and its data module in every worker
    arch = getattr(sys.implementation, "_multiarch", None)
    if arch is None:
        import sysconfig
        arch = sysconfig.get_config_var("MULTIARCH")
    dirs = [f"/usr/lib/{arch}/lua/{version}"] if arch else []
    # /usr/lib/*/lua/VERSION (listed here rather than with glob, which workers need not carry)
    try:
        names = sorted(n for n in os.listdir("/usr/lib") if not n.startswith("."))
    except OSError:
        names = []
    dirs += [d for d in (f"/usr/lib/{n}/lua/{version}" for n in names) if os.path.isdir(d) and d not in dirs]
    dirs += [f"/usr/local/lib/lua/{version}", f"/usr/lib/lua/{version}"]
    return dirs


def _patterns(entries: list[str], kind: str) -> list[str]:
    """--lua-path/--lua-cpath values: a pattern with '?' as is, a directory expanded."""
    out = []
    for e in entries:
        for part in e.split(";"):
            part = part.strip()
            if not part:
                continue
            if "?" in part:
                out.append(part)
            elif kind == "path":
                d = part.rstrip("/")
                out += [f"{d}/?.lua", f"{d}/?/init.lua"]
            else:
                out.append(f"{part.rstrip('/')}/?.so")
    return out


def package_paths(settings: Settings) -> tuple[str, str]:
    """The package.path and package.cpath prefixes: the user's, then the system's for this Lua
    version (Debian's Lua packages, C modules included)."""
    version = _lua_version(settings.engine)
    path = _patterns(settings.path, "path")
    path += [f"/usr/local/share/lua/{version}/?.lua", f"/usr/local/share/lua/{version}/?/init.lua",
             f"/usr/share/lua/{version}/?.lua", f"/usr/share/lua/{version}/?/init.lua"]
    cpath = _patterns(settings.cpath, "cpath")
    cpath += [f"{d}/?.so" for d in _multiarch_dirs(version)]
    return ";".join(path), ";".join(cpath)


_LUA_CODE: dict[str, bytes] = {}
_BYTECODE: dict[str, bytes] = {}     # the plugin's Lua files as string.dump made them (one engine per process)


def _lua_code(name: str) -> bytes:
    code = _LUA_CODE.get(name)
    if code is None:
        # pkgutil.get_data's work, without importing pkgutil into every worker: the package's
        # loader (a directory or the build's baked loader) reads the file beside __init__
        pkg = sys.modules[__package__]
        code = _LUA_CODE[name] = pkg.__spec__.loader.get_data(os.path.join(os.path.dirname(pkg.__file__), name))
    return code


# The state a Lua RPC/signal handler falls back to when no core is running (a signal handled
# between requests): the latest worker state created in this thread, else in this process.
_thread_local = threading.local()
_process_latest: list = [None]


def fallback_state():
    st = getattr(_thread_local, "state", None)
    return st if st is not None else _process_latest[0]


class LuaState:
    def __init__(self, settings: Settings, *, wid: int = 0, sid: int = 0, numproc: int = 1,
                 check: bool = False):
        self.settings = settings
        self.check = check            # the master's throwaway load check: os.exit must not exit
        self.req = None               # the request being served
        self.requests = 0             # requests served (drives --lua-gc-freq)
        self.gc_runs = 0
        self._steps = 0               # incremental GC runs (FULL_EVERY)
        self.errors = 0               # requests answered 500 or truncated
        self._out = b""               # io.write's partial line
        self.fallback = fallback_state

        lupa = _engine.load(settings.engine)
        self.lupa = lupa
        kwargs = dict(encoding=None, unpack_returned_tuples=True, register_eval=False,
                      register_builtins=False)
        if settings.max_memory:
            kwargs["max_memory"] = settings.max_memory
        rt = lupa.LuaRuntime(**kwargs)
        self.rt = rt

        path, cpath = package_paths(settings)
        set_paths = rt.eval(b"function(p, c) package.path = p .. ';' .. package.path;"
                            b" package.cpath = c .. ';' .. package.cpath end")
        set_paths(path.encode(), cpath.encode())

        # uwsgi.native (native.py): the env, the header walk and the pure `uwsgi` functions in C
        self.native = _native.load(rt, settings.engine)
        api = uwsgi_module.build(self)
        py_funcs = {
            b"log": self._log,
            b"log_write": self._log_write,
            b"exit": self._exit,
            b"monotonic": api.pop(b"monotonic"),   # the slice clock without ffi, not part of `uwsgi`
            b"loop_cores": api.pop(b"loop_cores"),  # for the cooperative uwsgi.websocket_recv
            b"input_read": self.input_read,
            b"input_readline": self.input_readline,
            b"stream_flush": self.stream_flush,
        }
        if self.native is not None:
            # the module's C functions replace these: no Python callable for them in this state
            for name in list(self.native.api):
                api.pop(name, None)
            del py_funcs[b"monotonic"]
            py_funcs[b"native"] = self.native
        # The `uwsgi` functions cross as one Python callable and their names: a Python object
        # pushed into Lua costs ~300 bytes of the state's heap, so ~70 of them cost ~20 KB each
        # state (uwsgi_table.lua makes one small Lua closure per name).
        py_funcs[b"cosocket"] = api.pop(b"cosocket")
        py_funcs[b"api_names"] = rt.table_from(sorted(api))
        py_funcs[b"api_call"] = _dispatcher(api)
        py = rt.table_from(py_funcs)
        conf = rt.table_from({
            b"version": uwsgi_module._version(),
            b"mywid": wid,
            b"mysid": sid,
            b"numproc": numproc,
            b"slice": settings.slice_size,
            b"slice_time": settings.slice_time,
        })
        # The plugin's Lua half: three files run in this order with (py, conf, shared), `shared`
        # being what they hand each other (runtime.lua's header lists it; they keep what they
        # take from it in locals). Named chunks, so that tracebacks say lua_plugin/FILE:LINE.
        load = rt.eval(b"function(code, name) return assert((loadstring or load)(code, '@lua_plugin/' .. name)) end")
        shared = rt.table()

        def run(name: str):
            # The first state of the process compiles the file and keeps its bytecode (debug
            # info kept: tracebacks keep their lines); the next ones load that: no parser
            # garbage left in their heap pages (~45 KB less private memory per state, LuaJIT).
            code = _BYTECODE.get(name)
            chunk = load(code if code is not None else _lua_code(name), name.encode())
            if code is None:
                _BYTECODE[name] = rt.eval(b"string.dump")(chunk)
            return chunk(py, conf, shared)

        run("output.lua")                     # print, io.write, os.exit, env.error:write
        self.M = run("runtime.lua")           # the request path: returns M
        handlers = run("uwsgi_table.lua")     # the `uwsgi` table: returns call_rpc, call_signal
        # The hot-path functions, looked up once.
        self._call = self.M.call
        self._resume = self.M.resume
        self._abandon = self.M.abandon
        self._gc = self.M.gc
        self.turn_end = self.M.turn_end
        self._call_rpc = handlers.call_rpc
        self._call_signal = handlers.call_signal
        self._set_ids = handlers.set_ids

        if not check:
            self._become_fallback()

    def _become_fallback(self) -> None:
        _thread_local.state = self
        _process_latest[0] = self

    def adopt(self, wid: int, sid: int) -> None:
        """A worker thread takes a state the master loaded before fork (check=True there, so
        that os.exit in a load raised an error instead of ending the master): from now on it
        is a worker's, with the worker's ids, and the fallback for this thread's handlers."""
        self.check = False
        self._set_ids(wid, sid)
        self._become_fallback()

    # ---- loading ----------------------------------------------------------------------

    def run_file(self, path: str, what: str) -> None:
        ok, err = self.M.run_file(os.fsencode(path))
        if not ok:
            raise LuaLoadError(f"{what} {path}: {_s(err)}")

    def load_app(self, path: str) -> None:
        ok, err = self.M.load_app(os.fsencode(path))
        if not ok:
            raise LuaLoadError(f"unable to load Lua app {path}: {_s(err)}")

    def check_syntax(self, path: str) -> None:
        ok, err = self.M.check_syntax(os.fsencode(path))
        if not ok:
            raise LuaLoadError(f"unable to load Lua app {path}: {_s(err)}")

    def load_all(self, worker: bool) -> None:
        """--lua-load files, the app, --lua-postload files (and, in a worker, --lua-postfork-worker)."""
        s = self.settings
        for f in s.load:
            self.run_file(f, "--lua-load")
        if s.app:
            self.load_app(s.app)
        for f in s.postload:
            self.run_file(f, "--lua-postload")
        if worker:
            for f in s.postfork:
                self.run_file(f, "--lua-postfork-worker")
        self.gc(full=True)

    # ---- request plumbing -------------------------------------------------------------

    def call(self, env, app_path: bytes, slot: int):
        """env: a table, or a uwsgi packet's vars block."""
        return self._call(env, app_path, slot)

    def resume(self, slot: int):
        return self._resume(slot)

    def abandon(self, slot: int) -> None:
        self._abandon(slot)

    def table_from(self, data):
        return self.rt.table_from(data)

    def gc(self, full: bool | None = None) -> None:
        """One GC run: a full collection with --lua-gc-full (or when asked), else an
        incremental step, every FULL_EVERY-th of which completes the cycle at once."""
        if full is None:
            full = self.settings.gc_full
            if not full:
                self._steps += 1
                if self._steps % FULL_EVERY == 0:
                    self._gc(False, FULL_UNDER_KB)     # completes the cycle if the heap is small
                    self.gc_runs += 1
                    return
        self._gc(full)
        self.gc_runs += 1

    def after_request(self, req) -> None:
        """Per-request end: forget the request, flush io.write's partial line, GC per --lua-gc-freq."""
        if self.req is req:
            self.req = None
        if self._out:
            log(self._out)
            self._out = b""
        self.requests += 1
        freq = self.settings.gc_freq
        if freq > 0 and self.requests % freq == 0:
            self.gc()

    def recover_memory(self) -> None:
        """After a LuaMemoryError: lift the cap for a full collection, then restore it (the
        collection itself, and any push of an argument, would fail at the cap)."""
        cap = self.settings.max_memory
        if not cap:
            return
        try:
            self.rt.set_max_memory(0)
            self._gc(True)
        finally:
            self.rt.set_max_memory(cap)

    def memory_near_cap(self) -> bool:
        cap = self.settings.max_memory
        return bool(cap) and self.rt.get_memory_used() > cap * 0.85

    def call_rpc(self, name: bytes, args):
        return self._call_rpc(name, *args)

    def call_signal(self, signum: int):
        return self._call_signal(signum)

    def shell(self) -> None:
        self.M.shell()

    # ---- called from Lua --------------------------------------------------------------

    def input_read(self, n, bounded):
        """env.input:read(n): up to n bytes, nil at the end; read() / read("*a"): the rest."""
        req = self.req
        if req is None:
            return None
        n = int(n)
        if n == 0:
            return b""
        data = req.input.read(n if bounded and n > 0 else -1)
        if not data and bounded:
            return None
        return data

    def input_readline(self, keep_newline):
        req = self.req
        if req is None:
            return None
        line = req.input.readline()
        if not line:
            return None
        if not keep_newline and line.endswith(b"\n"):
            line = line[:-1]
        return line

    def stream_flush(self, data, status, flat_headers) -> None:
        """From Lua, when a streamed body is about to block: what it yielded goes out now."""
        req = self.req
        if req is not None and not req.finished:
            flush_now(req, data, status, flat_headers)

    def _log(self, msg) -> None:
        log(msg if isinstance(msg, bytes) else str(msg).encode())

    def _log_write(self, data) -> None:
        buf = self._out + (data if isinstance(data, bytes) else str(data).encode())
        if b"\n" in buf:
            lines, _, buf = buf.rpartition(b"\n")
            log(lines)
        self._out = buf

    def _exit(self, code=None) -> None:
        """os.exit from Lua: in a worker, log it and end the process (the master respawns the
        worker); in the master's load check, return so that Lua raises an error instead."""
        if code is None or code is True:
            status = 0
        elif code is False:
            status = 1
        else:
            try:
                status = int(code) & 0xFF
            except (TypeError, ValueError):
                status = 1
        if self.check:
            return
        log(f"[uwsgi-lua] os.exit({status}) called by the Lua app: worker {os.getpid()} exits "
            "(the master respawns it)")
        os._exit(status)


def _dispatcher(funcs: dict):
    def api_call(name, *args):
        return funcs[name](*args)
    return api_call


def _s(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
