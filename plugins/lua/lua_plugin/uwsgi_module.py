"""The Python functions behind the Lua `uwsgi` table (uwsgi_table.lua adds the Lua-side wrappers:
async waits, table forms of the cache calls, error messages, register_rpc/register_signal).

Built once per lua_State as plain Python functions (lupa bug #294: never push the same Python
object into Lua per request). Arguments arrive as bytes/int/float/bool/None (encoding=None);
Lua tables never reach these functions (the table forms are unrolled in Lua, lupa bug #84).
"""

from __future__ import annotations

import errno as _errno
import os
import socket as _socket

import uwsgid
from uwsgid.plugins import api
from uwsgid.services import api as svc
from uwsgid.services import spooler as _spooler
from uwsgid.util.log import log as _log

from . import cosocket as _cosocket
from . import hooks as _hooks


def _version() -> bytes:
    return uwsgid.__version__.encode()


def _text(value) -> bytes:
    if isinstance(value, bytes):
        return value
    if value is None:
        return b"nil"
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value)).encode()
    if isinstance(value, (int, float)):
        return str(value).encode()
    return str(value).encode("utf-8", "backslashreplace")


# RPC and signal handlers: one Python wrapper per name/number for the whole process, that runs
# the Lua function registered under that name in the lua_State of the core calling it (every
# state registers the same names when it runs the app file).
_rpc_wrappers: dict[bytes, object] = {}
_signal_wrappers: dict[int, object] = {}


def _state_for_call(fallback):
    core = api.current_core()
    st = core.state.get("lua") if core is not None and getattr(core, "state", None) else None
    return st if st is not None else fallback()


def _rpc_wrapper(name: bytes, fallback):
    def lua_rpc(*args):
        st = _state_for_call(fallback)
        if st is None:
            raise RuntimeError(f"Lua rpc {name.decode(errors='replace')}: no lua_State in this process")
        ok, res = st.call_rpc(name, args)
        if not ok:
            detail = _text(res).decode(errors="replace")
            _log(f"[uwsgi-lua] error in the Lua rpc function {name.decode(errors='replace')}:\n{detail}")
            raise RuntimeError(detail.splitlines()[0] if detail else "error")
        return res
    lua_rpc.lua_rpc_name = name     # hook:NAME calls the Lua function itself (lua_plugin/hooks.py)
    return lua_rpc


def _signal_wrapper(num: int, fallback):
    def lua_signal_handler(signum):
        st = _state_for_call(fallback)
        if st is None:
            _log(f"[uwsgi-lua] signal {num}: no lua_State in this process")
            return
        ok, res = st.call_signal(int(signum))
        if not ok:
            _log(f"[uwsgi-lua] error in the Lua handler of signal {num}:\n{_text(res).decode(errors='replace')}")
    return lua_signal_handler


def build(state) -> dict[bytes, object]:
    """name -> Python function for one lua_State (`state`: a state.LuaState)."""
    funcs: dict[bytes, object] = {}

    def export(name):
        def deco(fn):
            funcs[name.encode()] = fn
            return fn
        return deco

    @export("log")
    def log(*args):
        if args:
            _log(b" ".join(_text(a) for a in args))

    # env.ctx / uwsgi hooks' r.ctx: the per-request dict code hooks share with the app, in
    # either runtime (uwsgid.plugins.code; lua_plugin/hooks.py converts the values)
    @export("ctx_get")
    def ctx_get(key):
        req = api.current_request()
        ctx = req.ctx if req is not None else None
        return _hooks.ctx_value(ctx.get(_hooks._str(key))) if ctx else None

    @export("ctx_set")
    def ctx_set(key, value=None):
        req = api.current_request()
        if req is None:
            raise RuntimeError("ctx is per request: no request is running")
        if req.ctx is None:
            req.ctx = {}
        _hooks.ctx_store(req.ctx, key, value)

    @export("mypid")
    def mypid():
        return os.getpid()

    @export("pid")
    def pid(wid=None):
        """uWSGI's uwsgi.pid(n): 0 = the master, N = worker N's pid (the caller without n)."""
        if wid is None or int(wid) == api.worker_id():
            return os.getpid()
        n = int(wid)
        if n == 0:
            return api.master_pid()
        srv = api.server
        sb = getattr(srv, "scoreboard", None) if srv is not None else None
        if sb is None or not 0 < n <= int(getattr(srv, "numproc", 0) or 0):
            return None
        try:
            return sb.pid(n) or None
        except Exception:
            return None

    @export("worker_id")
    def worker_id():
        return api.worker_id()

    @export("async_id")
    def async_id():
        return api.async_id()
    funcs[b"async_id_get"] = async_id

    @export("request_id")
    def request_id():
        return api.request_id()

    @export("micros")
    def micros():
        return api.micros()

    @export("mem")
    def mem():
        return api.memory_usage()

    @export("connection_fd")
    def connection_fd():
        return api.connection_fd()
    funcs[b"req_fd"] = connection_fd

    @export("ready_fd")
    def ready_fd():
        return api.ready_fd()

    @export("is_timed_out")
    def is_timed_out():
        return api.is_timed_out()

    # ---- websockets (uwsgid/net/websocket.py): Lua errors as uWSGI's ("unable to ...") ----
    @export("websocket_handshake")
    def websocket_handshake(key=None, origin=None, proto=None):
        api.websocket_handshake(key, origin, proto)

    @export("websocket_recv")
    def websocket_recv():
        return api.websocket_recv()

    @export("websocket_recv_nb")
    def websocket_recv_nb():
        return api.websocket_recv_nb()

    @export("websocket_send")
    def websocket_send(message):
        api.websocket_send(message)

    @export("websocket_send_binary")
    def websocket_send_binary(message):
        api.websocket_send_binary(message)

    @export("loop_cores")
    def loop_cores():
        """Cores of the running request's thread loop (more than 1: --async)."""
        core = api.current_core()
        return len(core.thread_loop.cores) if core is not None else 1

    @export("async_sleep")
    def async_sleep(seconds):
        api.async_sleep(float(seconds))

    @export("wait_fd_read")
    def wait_fd_read(fd, timeout=0):
        api.wait_fd_read(int(fd), float(timeout or 0))

    @export("wait_fd_write")
    def wait_fd_write(fd, timeout=0):
        api.wait_fd_write(int(fd), float(timeout or 0))

    @export("async_connect")
    def async_connect(address):
        """A non-blocking connect to "host:port" or a unix socket path: the fd (then
        wait_fd_write(fd) and is_connected(fd)), or nil when it cannot even start."""
        addr = _text(address).decode("utf-8", "replace")
        if addr.startswith("/") or addr.startswith("@"):
            s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            target = ("\0" + addr[1:]) if addr.startswith("@") else addr
        else:
            host, _, port = addr.rpartition(":")
            try:
                target = (host.strip("[]") or "127.0.0.1", int(port))
            except ValueError:
                return None
            s = _socket.socket(_socket.AF_INET6 if ":" in target[0] else _socket.AF_INET, _socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            err = s.connect_ex(target)
        except OSError:
            s.close()
            return None
        if err not in (0, _errno.EINPROGRESS, _errno.EAGAIN):
            s.close()
            return None
        return s.detach()

    @export("is_connected")
    def is_connected(fd):
        try:
            s = _socket.socket(fileno=os.dup(int(fd)))
        except OSError:
            return False
        try:
            if s.getsockopt(_socket.SOL_SOCKET, _socket.SO_ERROR):
                return False
            s.getpeername()
            return True
        except OSError:
            return False
        finally:
            s.close()

    @export("close")
    def close(fd):
        try:
            os.close(int(fd))
        except OSError:
            pass

    @export("set_logvar")
    def set_logvar(key, value):
        req = state.req
        if req is not None and getattr(req, "logvars", None) is not None:
            req.logvars[_text(key).decode("utf-8", "replace")] = _text(value).decode("utf-8", "replace")

    @export("req_input_read")
    def req_input_read(n=None):
        return state.input_read(-1 if n is None else int(n), 1 if n is not None else 0)

    @export("masterpid")
    def masterpid():
        return api.master_pid()

    @export("reload")
    def reload():
        """Graceful reload of the whole instance (SIGHUP to the master)."""
        return api.reload()

    @export("stop")
    def stop():
        """Graceful stop of the whole instance (SIGTERM to the master)."""
        return api.stop()

    @export("monotonic")
    def monotonic():
        import time
        return time.monotonic()

    funcs[b"cosocket"] = _cosocket.lua_side(state)     # uwsgi.tcp(): uwsgi_table.lua takes it out
    _add_services(funcs, state)
    _register_spooler(state)
    return funcs


_SERVICE_NAMES = (
    "cache_get", "cache_set", "cache_update", "cache_del", "cache_exists", "cache_clear",
    "cache_inc", "cache_dec", "cache_mul", "cache_div", "cache_num", "cache_getnum", "cache_setnum",
    "rpc", "call", "signal", "signal_registered", "signal_wait", "signal_received",
    "add_timer", "add_rb_timer", "add_file_monitor", "add_cron",
    "lock", "unlock", "is_locked",
    "metric_get", "metric_set", "metric_inc", "metric_dec", "metric_mul", "metric_div",
    "mule_msg", "mule_id", "mule_get_msg", "mule_msg_get",
    "spooler_pid", "i_am_the_spooler", "set_spooler_frequency",
)


def _add_services(funcs: dict, state) -> None:
    """The shared services (uwsgid.services.api)."""
    for name in _SERVICE_NAMES:
        funcs[name.encode()] = getattr(svc, name)

    def cache_keys(cache=None):
        return state.table_from(svc.cache_keys(cache))
    funcs[b"cache_keys"] = cache_keys

    funcs[b"rpc_list"] = lambda: state.table_from(svc.rpc_list())

    def spool(*pairs):
        """uwsgi.spool(table), unrolled by uwsgi_table.lua into key, value, key, value..."""
        task = {_text(pairs[i]): _text(pairs[i + 1]) for i in range(0, len(pairs) - 1, 2)}
        return svc.spool(task)
    funcs[b"spool"] = spool
    funcs[b"spooler_pids"] = lambda: state.table_from(svc.spooler_pids())
    funcs[b"spooler_jobs"] = lambda: state.table_from(svc.spooler_jobs())
    funcs[b"i_am_a_spooler"] = svc.i_am_the_spooler      # the name uWSGI's Lua plugin uses

    def register_rpc(name):
        name = _text(name)
        if name not in _rpc_wrappers:
            wrapper = _rpc_wrapper(name, state.fallback)
            if not svc.register_rpc(name, wrapper):
                return False
            _rpc_wrappers[name] = wrapper
        return True
    funcs[b"register_rpc"] = register_rpc

    def register_signal(num, target=b""):
        num = int(num)
        if num not in _signal_wrappers:
            wrapper = _signal_wrapper(num, state.fallback)
            if not svc.register_signal(num, target or b"", wrapper):
                return False
            _signal_wrappers[num] = wrapper
        return True
    funcs[b"register_signal"] = register_signal


# ---- the spooler's Lua side -------------------------------------------------------------------
# A spooler process has no worker state: it makes one (the --lua-load files, the app, the
# --lua-postload files: where the app sets uwsgi.spooler) when it starts, and runs the
# --spooler-import .lua files in it. A task goes to uwsgi.spooler(args) there: args is a table
# of strings (the task's args, spooler_task_name, body); it returns uwsgi.SPOOL_OK, SPOOL_RETRY
# or SPOOL_IGNORE; an error is logged with its traceback and the task retried.

_spooler_state: list = [None]
_state_class: list = [None]          # (LuaState, its Settings): the first state built tells us

_CALL_SPOOLER = b"""function(args)
  local u = package.loaded.uwsgi
  local fn = u and rawget(u, "spooler")
  if fn == nil then return 0 end
  local ok, res = xpcall(function() return fn(args) end, debug.traceback)
  if not ok then return nil, tostring(res) end
  if type(res) ~= "number" then return -1 end
  return res
end"""


def _spooler_lua_state():
    st = _spooler_state[0]
    if st is None:
        cls, settings = _state_class[0]
        st = _spooler_state[0] = cls(settings)
        st.spooler_call = st.rt.eval(_CALL_SPOOLER)
        try:
            st.load_all(worker=False)
        except Exception as exc:      # LuaLoadError: the Lua error, already a clear message
            _log(f"[uwsgi-lua] spooler: {exc}")
    return st


def _spooler_start() -> None:
    _spooler_lua_state()


def _spooler_import(spec: str) -> bool:
    if not spec.endswith(".lua"):
        return False
    try:
        _spooler_lua_state().run_file(spec, "--spooler-import")
    except Exception as exc:          # LuaLoadError
        _log(f"[uwsgi-lua] {exc}")
    return True


def _run_spooler_task(name: bytes, args: dict, body) -> int:
    st = _spooler_lua_state()
    task = dict(args)
    task[b"spooler_task_name"] = name
    if body:
        task[b"body"] = body
    res = st.spooler_call(st.table_from(task))
    if isinstance(res, tuple):
        _log(f"[uwsgi-lua] error in the Lua spooler function (task {name.decode('utf-8', 'replace')}):\n"
             f"{_text(res[1]).decode('utf-8', 'replace')}")
        return -1
    return int(res)


def _register_spooler(state) -> None:
    """At the first state built (the master's load check): the spooler processes will make
    theirs the same way, with the same settings."""
    if _state_class[0] is None:
        _state_class[0] = (type(state), state.settings)
        _spooler.register_plugin("lua", 6, _run_spooler_task, _spooler_start, _spooler_import)
