"""The `uwsgi` module apps import inside the server (`import uwsgi` fails elsewhere, which is
how apps tell where they run). Built once per process by `install(server)`; its functions
wrap the runtime-neutral uwsgid.plugins.api and the shared services (uwsgid.services.api), so that
PyPI's `uwsgidecorators` works on top of it. String values are bytes, as in uWSGI on Python 3."""

from __future__ import annotations

import os
import socket
import sys
import time
import types

import uwsgid
from uwsgid.plugins import api
from uwsgid.services import api as services
from uwsgid.services import spooler as _spooler
from uwsgid.util.log import log as _log

# uWSGI's spooler return codes (uwsgidecorators reads them).
SPOOL_OK = -2
SPOOL_RETRY = -1
SPOOL_IGNORE = 0


def _opt_value(value):
    if value is True or value is False or value is None:
        return value
    if isinstance(value, bytes):
        return value
    if isinstance(value, (list, tuple)):
        vals = [_opt_value(v) for v in value]
        return vals[0] if len(vals) == 1 else vals
    return str(value).encode("utf-8")


def build_opt(opts) -> dict:
    """uwsgi.opt: the options set for this instance, str keys, bytes values (flags True,
    repeated options a list), as uWSGI's Python module gives them."""
    out = {}
    if opts is None:
        return out
    for name, value in opts.items():
        out[name] = _opt_value(value)
    return out


def _opts():
    s = api.server
    return s.opts if s is not None else None


def _current_req(what: str):
    req = api.current_request()
    if req is None:
        raise RuntimeError(f"uwsgi.{what}() called outside a request")
    return req


def build(server) -> types.ModuleType:
    m = types.ModuleType("uwsgi", "uWSGI API for Python apps (uwsgid cffi plugin)")
    opts = server.opts if server is not None else None

    version = server.version if server is not None else uwsgid.__version__
    m.version = version.encode()
    m.version_info = tuple(int(x) if x.isdigit() else x for x in version.split("-")[0].split(".")) + (0, "")
    m.hostname = socket.gethostname().encode()
    m.numproc = int(getattr(server, "numproc", 1) or 1)
    m.buffer_size = int(opts.buffer_size) if opts is not None else 4096
    m.cores = int(opts.get("async") or 1) if opts is not None else 1
    m.has_threads = True
    m.started_on = int(getattr(server, "started_at", time.time()))
    m.opt = build_opt(opts)
    m.magic_table = {}
    m.SPOOL_OK, m.SPOOL_RETRY, m.SPOOL_IGNORE = SPOOL_OK, SPOOL_RETRY, SPOOL_IGNORE
    m.post_fork_hook = None      # apps (uwsgidecorators) replace it; called in each worker

    # ---- identity ---------------------------------------------------------------------
    def worker_id():
        return api.worker_id()

    def mule_id():
        return 0

    def masterpid():
        return api.master_pid()

    def request_id():
        return api.request_id()

    def async_id():
        return api.async_id()

    def connection_fd():
        return api.connection_fd()

    def in_farm(name=None):
        return False

    def workers():
        """One dict per worker with uWSGI's fields (str values as bytes, as uWSGI on Python 3)."""
        rows = api.workers()
        if not rows:
            rows = [{"id": wid, "pid": os.getpid() if wid == api.worker_id() else 0, "requests": 0,
                     "delta_requests": 0, "exceptions": 0, "harakiri_count": 0, "signals": 0,
                     "signal_queue": 0, "status": "idle", "rss": 0, "vsz": 0, "running_time": 0,
                     "last_spawn": 0, "respawn_count": 0, "tx": 0, "avg_rt": 0, "apps": []}
                    for wid in range(1, m.numproc + 1)]
        out = []
        for row in rows:
            w = {k: (v.encode() if isinstance(v, str) else v) for k, v in row.items() if k != "cores"}
            w["apps"] = tuple({k: (v.encode() if isinstance(v, str) else v) for k, v in a.items()}
                              for a in row.get("apps", ()))
            out.append(w)
        return tuple(out)

    def total_requests():
        return sum(w["requests"] for w in workers())

    # ---- logging and request state ----------------------------------------------------------
    def log(message):
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        _log(str(message))
        return True

    def set_logvar(key, value):
        req = _current_req("set_logvar")
        key = key.decode("latin-1") if isinstance(key, bytes) else str(key)
        value = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        req.logvars[key] = value

    def get_logvar(key):
        req = _current_req("get_logvar")
        key = key.decode("latin-1") if isinstance(key, bytes) else str(key)
        value = req.logvars.get(key)
        return value.encode("latin-1") if isinstance(value, str) else value

    def setprocname(name):
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        api.set_proctitle(str(name))
        return None

    # ---- process control --------------------------------------------------------------------
    reload = api.reload      # graceful reload of the whole instance (SIGHUP to the master)
    stop = api.stop          # graceful stop of the whole instance (SIGTERM to the master)

    # ---- async --------------------------------------------------------------------------------
    def async_sleep(seconds):
        api.async_sleep(seconds)
        return b""

    def wait_fd_read(fd, timeout=0):
        api.wait_fd_read(_fileno(fd), timeout)
        return b""

    def wait_fd_write(fd, timeout=0):
        api.wait_fd_write(_fileno(fd), timeout)
        return b""

    def suspend():
        api.suspend()
        core = api.current_core()
        if core is not None and getattr(core, "wait", None) is None:
            # a zero-second wait: the app's next yield, empty or not, reaches the core
            api.async_sleep(0)
        return b""

    def ready_fd():
        return api.ready_fd()

    def is_connected(fd=None):
        return True

    # ---- websockets (uwsgid/net/websocket.py); request_context is uWSGI's, for gevent: unused here
    def websocket_handshake(key=None, origin=None, proto=None):
        api.websocket_handshake(key, origin, proto)
        return None

    # bound directly (called once or twice per message): they take request_context too
    websocket_recv = api.websocket_recv
    websocket_recv_nb = api.websocket_recv_nb
    websocket_send = api.websocket_send
    websocket_send_binary = api.websocket_send_binary

    for fn in (worker_id, mule_id, masterpid, request_id, async_id, connection_fd,
               in_farm, workers, total_requests, log, set_logvar, get_logvar, setprocname, reload,
               stop, async_sleep, wait_fd_read, wait_fd_write, suspend, ready_fd, is_connected,
               websocket_handshake, websocket_recv, websocket_recv_nb, websocket_send,
               websocket_send_binary):
        setattr(m, fn.__name__, fn)
    m.micros = api.micros
    m.mypid = os.getpid
    _add_services(m)
    return m


def _fileno(fd) -> int:
    return fd if isinstance(fd, int) else fd.fileno()


def _add_services(m) -> None:
    """cache_*, rpc, signals, timers, locks, metrics: every public function of the shared
    services' API (uwsgid.services.api)."""
    for name in dir(services):
        if name.startswith("_") or name == "to_bytes":
            continue
        fn = getattr(services, name)
        if callable(fn) and getattr(fn, "__module__", None) == services.__name__:
            setattr(m, name, fn)
    m.RpcError = services.RpcError


def install(server) -> types.ModuleType:
    """Make `import uwsgi` work in this process (server only)."""
    module = build(server)
    sys.modules["uwsgi"] = module
    _spooler.register_plugin("python", 0, _run_spooler_task, _spooler_start, _spooler_import)
    return module


# ---- the spooler's Python side (uWSGI's python_plugin.c spooler hooks) ----------------------------

def _run_spooler_task(name: bytes, args: dict, body) -> int:
    """Hand a task to uwsgi.spooler (the app's function): its dict is the task's args (bytes
    keys and values), "spooler_task_name" and "body" (str keys). Not an int, or an exception
    (logged with its traceback): SPOOL_RETRY. No uwsgi.spooler: not ours (SPOOL_IGNORE)."""
    module = sys.modules.get("uwsgi")
    fn = getattr(module, "spooler", None) if module is not None else None
    if not callable(fn):
        return SPOOL_IGNORE
    task = {"spooler_task_name": name}
    task.update(args)
    if body:
        task["body"] = body
    try:
        ret = fn(task)
    except Exception:
        import traceback  # error path only: not carried by every worker
        _log(f"[spooler] the Python spooler function failed on {name.decode('utf-8', 'replace')}:\n"
             + traceback.format_exc().rstrip())
        return SPOOL_RETRY
    return ret if isinstance(ret, int) and not isinstance(ret, bool) else SPOOL_RETRY


def _spooler_start() -> None:
    """In a new spooler process, as in a worker: uwsgi.post_fork_hook (uwsgidecorators' @postfork)."""
    module = sys.modules.get("uwsgi")
    hook = getattr(module, "post_fork_hook", None) if module is not None else None
    if callable(hook):
        try:
            hook()
        except Exception:
            import traceback
            _log("[spooler] error in uwsgi.post_fork_hook():\n" + traceback.format_exc().rstrip())


def _spooler_import(spec: str) -> bool:
    """--spooler-import: a module name, or a .py file (imported under a name made of its path,
    as uWSGI's uwsgi_pyimport_by_filename). Errors are logged; .lua files are not ours."""
    if spec.endswith(".lua"):
        return False
    import importlib
    try:
        if "/" in spec or spec.endswith(".py"):
            import importlib.util
            name = os.path.splitext(spec)[0].strip("./").replace("/", ".") or "spooler_import"
            mspec = importlib.util.spec_from_file_location(name, os.path.abspath(spec))
            mod = importlib.util.module_from_spec(mspec)
            sys.modules[name] = mod
            mspec.loader.exec_module(mod)
        else:
            importlib.import_module(spec)
    except Exception:
        import traceback
        _log(f"[spooler] --spooler-import {spec} failed:\n" + traceback.format_exc().rstrip())
    return True


def refresh_after_fork(module) -> None:
    """Per-worker values that fork changed."""
    module.mypid = os.getpid
