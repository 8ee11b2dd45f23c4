"""Raw TCP handlers in Lua: --lua-raw FILE serves the connections of a --raw-socket whose
--raw-modifier1 is 6 (uwsgid/net/raw.py has the connection side). uWSGI's Lua plugin has no
raw mode; the option is named after its Python twin, --python-raw.

FILE returns the handler, a function(sock) (or a table with a `run` function), as a --lua file
returns its app. `sock` has recv(n), recvline(), recv_exactly(n), send(s), sendall(s), close(),
settimeout(seconds) and the fields fd, peer, remote_addr, remote_port and preread (the bytes
already there when the handler started; recv returns them too). The methods answer as
LuaSocket's do: the data, or nil and "closed" / "timeout" / an error.

Each core gets a lua_State of its own for its raw connections (the app's states are left
alone), with the `uwsgi` table, the --lua-path/--lua-cpath paths and the --lua-load files, made
at its first connection. The handler runs in a coroutine (raw_tcp.lua): a recv/send that cannot
go on arms a wait on the core and yields, so under --async N the other cores go on, and under
--threads each thread serves its own connections. The same --socket-timeout bounds each wait
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
    """The --lua-raw handler of this instance: its states, one per core."""

    def __init__(self, path: str, settings):
        self.path = path
        self.settings = settings

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
            w = core.worker
            wid = int(getattr(w, "id", 0) or 0)
            rs = core.state["lua-raw"] = self.new_state(wid=wid, sid=core.id, numproc=1)
        return rs.serve(req)


class RawState:
    """One core's raw lua_State, serving one connection at a time."""

    def __init__(self, st, path: str):
        from uwsgid.plugins import api
        self.st = st
        self.api = api
        self.sock = None
        self.req = None
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
        self.req = req
        self.sock = sock
        self.st.req = req
        try:
            outcome = self._start(sock.fd, sock.peer.encode(), sock.remote_addr.encode(), sock.remote_port,
                                  sock.preread)
        except Exception:
            self._end()
            raise
        if self._ended(outcome):
            return None
        return self._drive()

    def _drive(self):
        done = False
        try:
            while True:
                yield       # the core waits on what the handler armed
                if self._ended(self._resume()):
                    done = True
                    return
        finally:
            if not done:
                self.M.abandon()
                self._end()

    def _ended(self, outcome) -> bool:
        if isinstance(outcome, tuple):
            what, detail = outcome[0], outcome[1] if len(outcome) > 1 else None
        else:
            what, detail = outcome, None
        if what == b"wait":
            return False
        if what == b"error":
            from uwsgid.util.log import log
            req = self.req
            req.exception = True
            req.status = 500
            self.st.errors += 1
            log(f"[uwsgi-lua] error in the raw handler (connection from {req.conn.peer}):\n{_s(detail)}")
        self._end()
        return True

    def _end(self) -> None:
        self.sock = None
        self.req = None
        st = self.st
        st.req = None
        self.connections += 1
        freq = st.settings.gc_freq
        if freq > 0 and self.connections % freq == 0:
            st.gc()

    # ---- called from Lua ------------------------------------------------------------------
    def _recv_nb(self, n):
        try:
            data = self.sock.recv_nb(int(n))
        except OSError as exc:
            return None, _why(exc)
        if data is None:
            return None, b"again"
        if not data:
            return None, b"closed"
        return data

    def _send_nb(self, data):
        try:
            return self.sock.send_nb(data)
        except OSError as exc:
            return None, _why(exc)

    def _arm(self, write) -> None:
        sock = self.sock
        if write:
            self.api.wait_fd_write(sock.fd, sock.wait_slice())
        else:
            self.api.wait_fd_read(sock.fd, sock.wait_slice())

    def _after_wait(self):
        ready = not self.api.is_timed_out()
        why = self.sock.wait_over(ready)
        if why == "timeout":
            self.req.status = 408
            return b"timeout"
        if why == "stop":
            return b"stop"
        return b"ready" if ready else b"again"

    def _close(self) -> None:
        self.sock.close()

    def _settimeout(self, seconds) -> None:
        self.sock.settimeout(seconds)


def _why(exc: OSError) -> bytes:
    import errno
    if exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN, errno.EBADF, errno.ESHUTDOWN):
        return b"closed"
    return (exc.strerror or str(exc)).encode()


def _s(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
