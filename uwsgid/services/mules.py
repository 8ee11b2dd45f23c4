"""Mules: processes beside the workers that serve no request (uWSGI's --mule / --mules). A mule
runs a script (FILE.py with the Python `uwsgi` module, FILE.lua with a `uwsgi` table of the same
services) and then, or without a script, handles the signals sent to targets "mule", "mule<N>",
"mules". Apps send it messages with uwsgi.mule_msg(msg[, id]); it takes them with
uwsgi.mule_get_msg() (signals are handled while it waits).

The master forks the mules at its first tick (after the apps are loaded, so handlers registered
by the apps are inherited) and checks them at each tick: a dead mule is respawned (at most once a
second). Mules die with the master (PR_SET_PDEATHSIG) and leave when its channel closes (a
re-exec on reload closes it: the sockets are close-on-exec).
"""

from __future__ import annotations

import os
import signal
import sys
import time

from uwsgid import api as core_api
from uwsgid.log import log, log_exception
from uwsgid.services import signals

_specs: list[str] = []               # "" = no script
_pids: dict[int, int] = {}
_last_spawn: dict[int, float] = {}
_stopping = False


def setup(mule_specs: list, count: int = 0) -> int:
    """Declare the mules (master, before fork): one per --mule, plus --mules N without script."""
    if _specs:
        return len(_specs)
    for spec in mule_specs:
        spec = "" if spec in (None, True) else str(spec).strip()
        if spec and not spec.endswith((".py", ".lua")):
            raise ValueError(f"--mule {spec}: a mule runs a .py or a .lua file")
        if spec and not os.path.isfile(spec):
            raise ValueError(f"--mule {spec}: no such file")
        _specs.append(spec)
    if count < 0:
        raise ValueError(f"--mules must be >= 0 (got {count})")
    _specs.extend([""] * count)
    return len(_specs)


def count() -> int:
    return len(_specs)


def _alive(pid: int) -> bool:
    try:
        done, _status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False          # already reaped by the master's own wait loop
    return done == 0


def supervise(server) -> None:
    """Master tick: spawn the mules the first time, respawn dead ones."""
    if _stopping:
        return
    now = time.monotonic()
    for mid in range(1, len(_specs) + 1):
        pid = _pids.get(mid)
        if pid is not None and _alive(pid):
            continue
        if pid is not None:
            log(f"mule {mid} (pid: {pid}) died :( trying respawn ...")
            _pids.pop(mid, None)
        if now - _last_spawn.get(mid, -10.0) < 1.0:
            continue
        _spawn(mid, server, respawn=pid is not None)


def _spawn(mid: int, server, respawn: bool) -> None:
    _last_spawn[mid] = time.monotonic()
    try:
        pid = os.fork()
    except OSError as exc:
        log(f"cannot fork mule {mid}: {exc}")
        return
    if pid == 0:
        _mule_main(mid, server)
    _pids[mid] = pid
    script = _specs[mid - 1]
    log(f"{'respawned' if respawn else 'spawned'} uWSGI mule {mid} (pid: {pid}){' running ' + script if script else ''}")


def _die_with_parent() -> None:
    try:
        import ctypes   # in the mule only: the master and workers need not carry it
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)   # PR_SET_PDEATHSIG
    except Exception:
        pass


def _mule_main(mid: int, server) -> None:
    code = 0
    try:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        _die_with_parent()
        core_api.worker = None
        signals.mule_started(mid)
        script = _specs[mid - 1]
        if script:
            _run(script, server)
        signals.mule_loop(_python_msg_hook(mid))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        log_exception(f"mule {mid}: error in {_specs[mid - 1] or 'the signal loop'}:")
        code = 1
    os._exit(code)


def _python_msg_hook(mid: int):
    """uWSGI's Python mule_msg_hook (set by uwsgidecorators for @mulefunc): when the app set
    one, a mule without script hands it every message it takes."""
    module = sys.modules.get("uwsgi")
    hook = getattr(module, "mule_msg_hook", None) if module is not None else None
    if not callable(hook):
        return None

    def deliver(msg: bytes) -> None:
        try:
            hook(msg)
        except Exception:
            log_exception(f"mule {mid}: error in uwsgi.mule_msg_hook:")
    return deliver


def _run(script: str, server) -> None:
    if script.endswith(".py"):
        if "uwsgi" not in sys.modules:
            try:
                from cffi_plugin import uwsgi_module
                uwsgi_module.install(server)
            except Exception:
                log_exception(f"mule: the Python uwsgi module is unavailable for {script}:")
        import runpy
        runpy.run_path(script, run_name="__main__")
    else:
        _run_lua(script)


_LUA_API = ("cache_get", "cache_set", "cache_update", "cache_del", "cache_exists", "cache_clear",
            "cache_inc", "cache_dec", "cache_mul", "cache_div", "cache_num", "cache_getnum", "cache_setnum",
            "register_rpc", "rpc", "call", "register_signal", "signal", "signal_registered", "signal_wait",
            "signal_received", "add_timer", "add_rb_timer", "add_file_monitor", "add_cron",
            "lock", "unlock", "is_locked", "metric_get", "metric_set", "metric_inc", "metric_dec",
            "metric_mul", "metric_div", "mule_msg", "mule_get_msg", "mule_id")


def _lua_engine():
    # never load a second Lua engine next to the one the Lua plugin may have loaded
    for name in ("lupa.luajit21", "lupa.luajit20", "lupa.lua51", "lupa.lua52", "lupa.lua53", "lupa.lua54"):
        if name in sys.modules:
            return sys.modules[name]
    import lupa
    with lupa.allow_lua_module_loading():
        from lupa import luajit21
    return luajit21


def _run_lua(script: str) -> None:
    from uwsgid.services import api
    engine = _lua_engine()
    rt = engine.LuaRuntime(encoding=None, unpack_returned_tuples=True)
    rt.execute(b'package.path = "/usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua;" .. package.path\n'
               b'package.cpath = "/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;" .. package.cpath')
    t = rt.table()
    for name in _LUA_API:
        t[name.encode()] = getattr(api, name)
    t[b"cache_keys"] = lambda cache=None: rt.table_from(api.cache_keys(cache))
    t[b"rpc_list"] = lambda: rt.table_from(api.rpc_list())
    t[b"worker_id"] = lambda: 0
    t[b"log"] = lambda *a: log(b" ".join(x if isinstance(x, bytes) else str(x).encode() for x in a))
    t[b"micros"] = core_api.micros
    rt.globals()[b"uwsgi"] = t
    with open(script, "rb") as f:
        code = f.read()
    fn = rt.eval(b"function(code, name) local f, err = (loadstring or load)(code, name) if not f then error(err, 0) end "
                 b"return f end")
    fn(code, b"@" + script.encode())()


def stop(timeout: float = 3.0) -> None:
    """Master shutdown: SIGTERM the mules, SIGKILL the ones still there after timeout."""
    global _stopping
    _stopping = True
    for pid in _pids.values():
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    left = dict(_pids)
    while left and time.monotonic() < deadline:
        left = {m: p for m, p in left.items() if _alive(p)}
        if left:
            time.sleep(0.05)
    for pid in left.values():
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    _pids.clear()


def pids() -> dict[int, int]:
    return dict(_pids)


def _reset_for_tests() -> None:
    global _stopping
    _specs.clear()
    _pids.clear()
    _last_spawn.clear()
    _stopping = False
