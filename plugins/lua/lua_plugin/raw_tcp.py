"""Raw TCP handlers in Lua: --lua-raw FILE serves the connections of a --raw-socket whose
--raw-modifier1 is 6 (uwsgid/net/raw.py has the connection side). uWSGI's Lua plugin has no
raw mode; the option is named after its Python twin, --python-raw.

FILE returns the handler, a function(sock) (or a table with a `run` function), as a --lua file
returns its app. `sock` has recv(n), recvline(), recv_exactly(n), send(s), sendall(s), close(),
settimeout(seconds) and the fields fd, peer, remote_addr, remote_port and preread (the bytes
already there when the handler started; recv returns them too). The methods answer as
LuaSocket's do: the data, or nil and "closed" / "timeout" / an error.

The handler runs in the thread's lua_State (issue 20: one per thread, shared by its async
cores): the --lua app's when there is one, else one made at the thread's first connection
with the `uwsgi` table, the --lua-path/--lua-cpath paths and the --lua-load files. Each
connection runs in a coroutine of its own (raw_tcp.lua): a recv/send that cannot go on arms a
wait on its core and yields, so under --async N the other cores go on, and under --threads
each thread serves its own connections in its own state. The same --socket-timeout bounds each wait
(sock:settimeout changes it), and a graceful stop ends a wait as the peer closing would.
An error in the handler is logged with its Lua traceback and the connection closed.
"""

from __future__ import annotations

import os
import sys

from uwsgid.config.options import Option

RAW_OPTIONS = [
    Option("lua-raw", kind="str", group="lua", metavar="FILE",
           help="a Lua file returning the function(sock) that serves each connection of a --raw-socket "
                "(--raw-modifier1 6): sock:recv/recvline/send/sendall/close, sock.preread, sock.peer"),
]


def configure(opts, settings):
    """--lua-raw checked and loaded once in a throwaway state (a broken file stops the start with
    its Lua error, as a broken --lua app does): a LuaRaw, or None without the option."""
    path = opts.get("lua-raw")
    if not path:
        return None
    from uwsgid.plugins.contract import AppLoadError, OptionValueError
    from uwsgid.util.log import log

    from . import engine as _engine
    if not os.path.isfile(path):
        raise AppLoadError(f"--lua-raw {path}: no such file")
    try:
        _engine.load(settings.engine)
    except _engine.EngineError as exc:
        raise OptionValueError(str(exc)) from None
    raw = LuaRaw(os.path.abspath(path), settings)
    try:
        raw.new_state(check=True)
    except RawLoadError as exc:
        raise AppLoadError(str(exc)) from None
    log(f"[uwsgi-lua] raw handler {path} loaded (engine lupa.{settings.engine})")
    return raw


class RawLoadError(Exception):
    pass


_CODE = []


def _glue() -> bytes:
    if not _CODE:
        pkg = sys.modules[__package__]
        _CODE.append(pkg.__spec__.loader.get_data(os.path.join(os.path.dirname(pkg.__file__), "raw_tcp.lua")))
    return _CODE[0]


class LuaRaw:
    """The --lua-raw handler of this instance: its glue, one per thread's state."""

    def __init__(self, path: str, settings):
        self.path = path
        self.settings = settings
        self._states: dict[int, RawState] = {}     # id(thread loop) -> its RawState

    def new_state(self, check: bool = False, wid: int = 0, sid: int = 0, numproc: int = 1) -> "RawState":
        from .options import Settings
        from .state import LuaLoadError, LuaState
        s = self.settings
        st_settings = Settings(**{**s.__dict__, "app": None})
        try:
            st = LuaState(st_settings, wid=wid, sid=sid, numproc=numproc, check=check)
            st.load_all(worker=not check)
        except LuaLoadError as exc:
            raise RawLoadError(str(exc)) from None
        return RawState(st, self.path)

    def serve(self, req):
        """Plugin.raw_request for the Lua plugin."""
        core = req.core
        rs = core.state.get("lua-raw")
        if rs is None:
            rs = core.state["lua-raw"] = self._thread_state(core)
        return rs.serve(req)

    def _thread_state(self, core) -> "RawState":
        thread_loop = getattr(core, "thread_loop", None)
        key = id(thread_loop) if thread_loop is not None else id(core)
        rs = self._states.get(key)
        if rs is None:
            app_state = core.state.get("lua")     # the thread's --lua state (plugin.init_core)
            if app_state is not None:
                rs = RawState(app_state, self.path)
            else:
                w = core.worker
                wid = int(getattr(w, "id", 0) or 0)
                rs = self.new_state(wid=wid, sid=core.id, numproc=1)
            self._states[key] = rs
        return rs


class RawState:
    """The raw glue in one thread's lua_State, serving the connections of its cores (the
    Lua functions name the connection by its fd)."""

    def __init__(self, st, path: str):
        from uwsgid.plugins import api
        self.st = st
        self.api = api
        self.reqs: dict[int, object] = {}     # fd -> the RawRequest of that connection
        self.connections = 0
        rt = st.rt
        py = rt.table_from({
            b"recv_nb": self._recv_nb,
            b"send_nb": self._send_nb,
            b"arm": self._arm,
            b"after_wait": self._after_wait,
            b"close": self._close,
            b"settimeout": self._settimeout,
        })
        load = rt.eval(b"function(code, name) return assert((loadstring or load)(code, '@lua_plugin/' .. name)) end")
        self.M = load(_glue(), b"raw_tcp.lua")(py)
        ok, err = self.M.load(os.fsencode(path))
        if not ok:
            raise RawLoadError(f"--lua-raw {path}: {_s(err)}")
        self._start = self.M.start
        self._resume = self.M.resume

    # ---- one connection -----------------------------------------------------------------
    def serve(self, req):
        sock = req.sock
        fd = sock.fd
        self.reqs[fd] = req
        self.st.req = req      # the state is shared with the thread's other cores
        try:
            outcome = self._start(fd, sock.peer.encode(), sock.remote_addr.encode(), sock.remote_port,
                                  sock.preread)
        except Exception:
            self._end(fd)
            raise
        if self._ended(req, outcome):
            return None
        return self._drive(req, fd)

    def _drive(self, req, fd: int):
        done = False
        st = self.st
        resume = self._resume
        try:
            while True:
                yield       # the core waits on what the handler armed
                st.req = req
                if self._ended(req, resume(fd)):
                    done = True
                    return
        finally:
            if not done:
                self.M.abandon(fd)
                self._end(fd)

    def _ended(self, req, outcome) -> bool:
        if isinstance(outcome, tuple):
            what, detail = outcome[0], outcome[1] if len(outcome) > 1 else None
        else:
            what, detail = outcome, None
        if what == b"wait":
            return False
        fd = req.sock.fd
        if what == b"error":
            from uwsgid.util.log import log
            req.exception = True
            req.status = 500
            self.st.errors += 1
            log(f"[uwsgi-lua] error in the raw handler (connection from {req.conn.peer}):\n{_s(detail)}")
        self._end(fd)
        return True

    def _end(self, fd: int) -> None:
        req = self.reqs.pop(fd, None)
        st = self.st
        if st.req is req:
            st.req = None
        self.connections += 1
        freq = st.settings.gc_freq
        if freq > 0 and self.connections % freq == 0:
            st.gc()

    # ---- called from Lua ------------------------------------------------------------------
    def _recv_nb(self, fd, n):
        try:
            data = self.reqs[fd].sock.recv_nb(int(n))
        except OSError as exc:
            return None, _why(exc)
        if data is None:
            return None, b"again"
        if not data:
            return None, b"closed"
        return data

    def _send_nb(self, fd, data):
        try:
            return self.reqs[fd].sock.send_nb(data)
        except OSError as exc:
            return None, _why(exc)

    def _arm(self, fd, write) -> None:
        sock = self.reqs[fd].sock
        if write:
            self.api.wait_fd_write(sock.fd, sock.wait_slice())
        else:
            self.api.wait_fd_read(sock.fd, sock.wait_slice())

    def _after_wait(self, fd):
        req = self.reqs[fd]
        ready = not self.api.is_timed_out()
        why = req.sock.wait_over(ready)
        if why == "timeout":
            req.status = 408
            return b"timeout"
        if why == "stop":
            return b"stop"
        return b"ready" if ready else b"again"

    def _close(self, fd) -> None:
        self.reqs[fd].sock.close()

    def _settimeout(self, fd, seconds) -> None:
        self.reqs[fd].sock.settimeout(seconds)


def _why(exc: OSError) -> bytes:
    import errno
    if exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN, errno.EBADF, errno.ESHUTDOWN):
        return b"closed"
    return (exc.strerror or str(exc)).encode()


def _s(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
