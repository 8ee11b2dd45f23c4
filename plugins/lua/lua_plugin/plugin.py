"""The Lua WSAPI plugin (modifier1 6): options, lifecycle, one lua_State per core.

Importing it is cheap (the options and this class): the modules that run Lua (lupa, the state,
the `uwsgi` table and the services behind it, the request path) are imported by _runtime() when
a Lua app or script is configured, not by every ./uwsgi that embeds the plugin."""

from __future__ import annotations

import gc
import os
import time

from uwsgid.plugins.contract import AppLoadError, OptionValueError, Plugin
from uwsgid.util.log import log

from . import engine as _engine
from . import raw_tcp
from .options import OPTIONS, Settings

# bound by _runtime(): the state and the request path
LuaLoadError = LuaState = handle = None


def _runtime() -> None:
    global LuaLoadError, LuaState, handle
    if handle is None:
        from . import lane  # noqa: F401  (the native lane's way in: imported before fork, not by each worker)
        from .response import handle
        from .state import LuaLoadError, LuaState


def settings_from(opts) -> Settings:
    """Check the options and collect them. A bad value raises OptionValueError (exit 1), a
    missing file AppLoadError (exit 22 with --need-app); both are one clear line."""
    g = opts.get
    try:
        engine = _engine.canonical(g("lua-engine") or "luajit21")
    except _engine.EngineError as exc:
        raise OptionValueError(str(exc)) from None
    gc_freq = int(g("lua-gc-freq", 1) or 0)
    if gc_freq < 0:
        raise OptionValueError(f"--lua-gc-freq {gc_freq}: must be >= 0 (0 = never, 1 = every request)")
    max_mb = int(g("lua-max-memory", 0) or 0)
    if max_mb < 0:
        raise OptionValueError(f"--lua-max-memory {max_mb}: must be >= 0 megabytes")
    app = g("lua")
    files = [("--lua", app)] if app else []
    files += [(f"--lua-{k}", f) for k in ("load", "postload", "postfork-worker") for f in g(f"lua-{k}", []) or []]
    for opt, path in files:
        if not os.path.isfile(path):
            raise AppLoadError(f"{opt} {path}: no such file")
    return Settings(
        app=os.path.abspath(app) if app else None,
        # absolute: workers may run after --chdir2
        load=[os.path.abspath(f) for f in g("lua-load", []) or []],
        postload=[os.path.abspath(f) for f in g("lua-postload", []) or []],
        postfork=[os.path.abspath(f) for f in g("lua-postfork-worker", []) or []],
        engine=engine,
        max_memory=max_mb * 1024 * 1024,
        path=list(g("lua-path", []) or []),
        cpath=list(g("lua-cpath", []) or []),
        gc_freq=gc_freq,
        gc_full=bool(g("lua-gc-full", False)),
        shell=bool(g("lua-shell", False)),
    )


def _opt_int(opts, name: str) -> int:
    try:
        return max(1, int(opts.get(name, 1) or 1)) if opts is not None else 1
    except (TypeError, ValueError):
        return 1


class LuaPlugin(Plugin):
    name = "lua"
    title = "Lua (WSAPI)"
    modifier1 = 6
    options = OPTIONS + raw_tcp.RAW_OPTIONS

    def __init__(self):
        self.settings: Settings | None = None
        self.app_path = b""
        self.server = None
        self.requests = 0
        self.startup_time = 0
        self.states: list[LuaState] = []   # this process's states (stats)
        self._thread_states: dict[int, LuaState] = {}   # id(thread loop) -> its state
        self._prefork: list[LuaState] = []   # made by the master, taken by worker threads
        self.script_states: list[LuaState] = []   # run_script's: their RPC functions and handlers live on

    def _active(self) -> bool:
        s = self.settings
        return s is not None and bool(s.app or s.load or s.postload or s.postfork or s.shell
                                      or getattr(self, "hooks_on", False))

    def configure(self, opts, server) -> None:
        self.server = server
        self.settings = settings_from(opts)
        self.raw = raw_tcp.configure(opts, self.settings)    # --lua-raw (None without it)
        from uwsgid.plugins import code
        # --lua-hooks or lua: routes (hooks.py): the states are made even without a Lua app
        self.hooks_on = bool(opts.get("lua-hooks", None)) or any(w[0] == "lua" for w in code.WANTED)
        if not self._active():
            return
        s = self.settings
        self.app_path = os.fsencode(s.app or "")
        _runtime()
        try:
            _engine.load(s.engine)
        except _engine.EngineError as exc:
            # an engine lupa lacks here, or lupa missing: the option cannot be honoured
            raise OptionValueError(str(exc)) from None
        # The workers' states are made and loaded here, before fork, as uWSGI does: one per
        # thread (--threads), each worker thread takes one, and its pages stay shared with the
        # master until written. This is also the fail-fast check: a broken app stops the server
        # with its Lua error instead of crash-looping workers. With --lazy-apps the app runs only
        # in the workers: check its syntax here, in a throwaway state.
        started = time.monotonic()
        lazy = bool(opts.get("lazy-apps") or opts.get("lazy"))
        numproc = _opt_int(opts, "processes")
        st = None
        try:
            if lazy:
                st = LuaState(s, check=True)
                if s.app:
                    st.check_syntax(s.app)
            else:
                for _ in range(_opt_int(opts, "threads")):
                    st = LuaState(s, numproc=numproc, check=True)
                    st.load_all(worker=False)
                    self._prefork.append(st)
        except LuaLoadError as exc:
            raise AppLoadError(str(exc)) from None
        except Exception as exc:  # e.g. LuaMemoryError under --lua-max-memory
            raise AppLoadError(f"unable to load Lua app {s.app}: {type(exc).__name__}: {exc}") from None
        finally:
            if lazy or st not in self._prefork:
                # The state and its Python callbacks form a cycle: collect it now, so that
                # nothing it opened (a SQLite connection...) is inherited by the workers.
                self._prefork.clear()
                st = None
                gc.collect()
        self.startup_time = int(time.monotonic() - started)
        from . import hooks
        hooks.configure(self, opts)     # the "lua" hook provider, --lua-hooks, the lua: routes
        if s.app:
            log(f"[uwsgi-lua] WSAPI app {s.app} loaded (engine lupa.{s.engine})")

    def has_app(self) -> bool:
        return bool(self.settings and self.settings.app)

    def init_core(self, core) -> None:
        if not self._active():
            return
        _runtime()
        s = self.settings
        # One lua_State per thread, shared by the thread's async cores (uWSGI 2.1's design: a
        # core costs a slot, not a state, ~230 KB each); each thread has its own, so threads
        # run Lua in parallel.
        thread_loop = getattr(core, "thread_loop", None)
        key = id(thread_loop) if thread_loop is not None else id(core)
        st = self._thread_states.get(key)
        if st is None:
            worker = getattr(core, "worker", None)
            wid = int(getattr(worker, "id", 0) or 0)
            opts = getattr(self.server, "opts", None)
            numproc = _opt_int(opts, "processes")
            threads = _opt_int(opts, "threads")
            sid = max(wid - 1, 0) * threads + len(self._thread_states)
            try:
                if self._prefork:
                    st = self._prefork.pop(0)
                    st.adopt(wid, sid)
                    for f in s.postfork:
                        st.run_file(f, "--lua-postfork-worker")
                    if s.postfork:
                        st.gc(full=True)
                else:       # --lazy-apps, or more threads than the master foresaw
                    st = LuaState(s, wid=wid, sid=sid, numproc=numproc)
                    st.load_all(worker=True)
            except LuaLoadError as exc:
                raise AppLoadError(str(exc)) from None
            self._thread_states[key] = st
            self.states.append(st)
            if s.shell and wid == 1 and not self.states[:-1]:
                self._shell(st)
        core.state[self.name] = st

    def _shell(self, st: LuaState) -> None:
        """--lua-shell: debug.debug() on this worker's stdin before it serves (uWSGI's hijack)."""
        log("[uwsgi-lua] Hallo, this is lua debug.debug() aka lua_debug, use CTRL+D to resume")
        try:
            st.shell()
        except Exception as exc:
            log(f"[uwsgi-lua] unable to call debug.debug(): {exc}")
        log(f"[uwsgi-lua] worker {os.getpid()} has been resumed...")

    def request(self, req):
        st = req.core.state.get("lua")
        if st is None:
            if not self.has_app():
                # modifier1 6 without --lua: the core normally answers 503 itself (has_app()).
                req.start_response(b"503 Service Unavailable", [(b"Content-Type", b"text/plain")])
                req.write(b"no Lua app loaded\n")
                return None
            # A core the worker did not announce with init_core: give it its state now.
            self.init_core(req.core)
            st = req.core.state["lua"]
        self.requests += 1
        return handle(st, req, self.app_path)

    def lane_app(self, core):
        """The native lane's way to the app on `core` (lane.py)."""
        from .lane import lane_app
        return lane_app(self, core)

    def has_raw(self) -> bool:
        return getattr(self, "raw", None) is not None

    def raw_request(self, req):
        return self.raw.serve(req)

    def after_request(self, req) -> None:
        """The response is out (or the client gone): the state's per-request end, GC included."""
        st = req.core.state.get("lua")
        if st is not None:
            st.after_request(req)

    def shutdown(self) -> None:
        pass

    script_extensions = (".lua",)

    def run_script(self, path: str) -> None:
        """A --mule FILE.lua: the module-level run_script below, its state kept."""
        self.script_states.append(run_script(path))

    def stats_apps(self) -> list[dict]:
        if not self.has_app():
            return []
        return [{
            "id": 0,
            "modifier1": self.modifier1,
            "mountpoint": "",
            "startup_time": self.startup_time,
            "requests": self.requests,
            "exceptions": sum(st.errors for st in self.states),
            "chdir": "",
        }]


def run_script(path: str, opts=None) -> LuaState:
    """Run a Lua file in a new lua_State with the full `uwsgi` table (for a --mule FILE.lua, or
    any process that is not a worker): the same paths, engine and shims as the app's states.
    Raises LuaLoadError with the Lua error. The state is returned (keep it: its RPC functions
    and signal handlers live in it)."""
    if opts is not None:
        settings = settings_from(opts)
    elif plugin_settings() is not None:
        settings = plugin_settings()
    else:
        settings = Settings()
    settings = Settings(**{**settings.__dict__, "app": None, "load": [], "postload": [], "postfork": []})
    _runtime()
    st = LuaState(settings)
    st.run_file(path, "Lua script")
    return st


def plugin_settings() -> Settings | None:
    """The settings of this process's configured Lua plugin, if it was configured."""
    import lua_plugin
    return getattr(getattr(lua_plugin, "plugin", None), "settings", None)
