"""Mules: processes beside the workers that serve no request (uWSGI's --mule / --mules). A mule
runs a script (by the language plugin whose script_extensions has its extension: FILE.py with
the Python `uwsgi` module, FILE.lua with the Lua `uwsgi` table) and then, or without a script,
handles the signals sent to targets "mule", "mule<N>", "mules". Apps send it messages with
uwsgi.mule_msg(msg[, id]) over the mules' message queues (services/channels.py); it takes them
with uwsgi.mule_get_msg() (signals are handled while it waits).

The master forks the mules at its first tick (after the apps are loaded, so handlers registered
by the apps are inherited) and checks them at each tick: a dead mule is respawned (at most once a
second). Mules die with the master (PR_SET_PDEATHSIG) and leave when its channel closes (a
re-exec on reload closes it: the sockets are close-on-exec).
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

from uwsgid.plugins import api as core_api
from uwsgid.services import channels, signal_receiver, signals
from uwsgid.services.channels import MULE_MSG_MAX
from uwsgid.util.log import log, log_exception
from uwsgid.util.process import die_with_parent

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
    die_with_parent()


def _mule_main(mid: int, server) -> None:
    code = 0
    try:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        _die_with_parent()
        core_api.worker = None
        mule_started(mid)
        from uwsgid.server import procname, user_hooks  # --procname*, --hook-as-mule
        procname.name_process(server.opts, f"uWSGI mule {mid}")
        try:
            user_hooks.run("as-mule", server.opts, server)
        except (user_hooks.HookFailed, user_hooks.HookExit) as e:
            os._exit(user_hooks.fatal_in_child(server, e))
        script = _specs[mid - 1]
        if script:
            _run_script(mid, script, server)
        mule_loop(_python_msg_hook(mid))
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


def _run_script(mid: int, script: str, server) -> None:
    """The script, by the loaded plugin whose script_extensions has its extension (the Python
    plugin .py, the Lua plugin .lua); without one, the mule goes on without its script."""
    ext = os.path.splitext(script)[1]
    for plugin in server.plugins.values():
        if ext in plugin.script_extensions:
            plugin.run_script(script)
            return
    log(f"mule {mid}: {script} not run: no loaded plugin runs {ext} files (the mule goes on without a script)")


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


def reload() -> None:
    """--touch-mules-reload (uWSGI's uwsgi_reload_mules): SIGHUP ends each mule (its default
    action); supervise() respawns it at the next tick."""
    for pid in _pids.values():
        try:
            os.kill(pid, signal.SIGHUP)
        except ProcessLookupError:
            pass


def pids() -> dict[int, int]:
    return dict(_pids)


# ---- in a mule: its start, its messages and its loop ----------------------------------------

def mule_started(mid: int) -> None:
    """In a mule after fork: keep its channels and queues (and the shared mule ones)."""
    signals.ensure()
    channels.mule_started(mid)


def mule_msg(msg: bytes, mule: int | None = None) -> bool:
    """Queue msg for mule `mule` (1..N) or, with None, for the first mule that asks."""
    signals.ensure()
    nmules = channels.mule_count()
    if not nmules:
        raise ValueError("mule_msg: no mules are configured (--mule / --mules)")
    if len(msg) > MULE_MSG_MAX:
        raise ValueError(f"mule_msg: a message is at most {MULE_MSG_MAX} bytes (got {len(msg)})")
    if mule is None or mule == 0:
        sock = channels.mule_queue(None)
        what = "the mules"
    else:
        sock = channels.mule_queue(mule)
        if sock is None:
            raise ValueError(f"mule_msg: there are mules 1..{nmules} (got {mule})")
        what = f"mule {mule}"
    try:
        sock.send(msg)
        return True
    except BlockingIOError:
        log(f"*** MULE MSG QUEUE IS FULL for {what}: message dropped ***")
    except OSError as exc:
        log(f"mule_msg to {what}: {exc}")
    return False


def _mule_poller():
    socks = {s.fileno(): ("sig", s) for s in channels.receiving_ends()}
    for s_ in channels.mule_queue_ends():
        socks[s_.fileno()] = ("msg", s_)
    poller = select.poll()
    for fd in socks:
        poller.register(fd, select.POLLIN)
    return poller, socks


def _mule_turn(poller, socks, timeout_ms, want_msg: bool):
    """One poll in a mule: run signal handlers; return a message when one is taken."""
    for fd, ev in poller.poll(timeout_ms):
        kind, sock = socks[fd]
        if kind == "sig":
            if ev & select.POLLIN:
                signal_receiver.drain(sock)
            if ev & (select.POLLHUP | select.POLLERR):
                # the master's end is closed: it died or re-executed itself (reload)
                signal_receiver.mule_master_gone()
        elif want_msg and ev & select.POLLIN:
            try:
                return sock.recv(MULE_MSG_MAX + 1)
            except (BlockingIOError, InterruptedError):
                continue    # another mule took it (shared queue)
    return None


def mule_get_msg(timeout: float | None = None) -> bytes | None:
    """In a mule: block until a message arrives (signals are handled meanwhile); None on timeout."""
    if not channels.mule_id():
        raise ValueError("mule_get_msg can only be called in a mule")
    poller, socks = _mule_poller()
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = 1000 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
        msg = _mule_turn(poller, socks, left, True)
        if msg is not None:
            return msg
        if deadline is not None and time.monotonic() >= deadline:
            return None


def mule_loop(on_message=None) -> None:
    """A mule with no script (or whose script returned): run signal handlers forever, and give
    the messages to on_message(msg) when there is one (else they wait for a scripted mule)."""
    poller, socks = _mule_poller()
    if on_message is None:
        socks = {fd: v for fd, v in socks.items() if v[0] == "sig"}
        poller = select.poll()
        for fd in socks:
            poller.register(fd, select.POLLIN)
    while True:
        msg = _mule_turn(poller, socks, 1000, on_message is not None)
        if msg is not None:
            on_message(msg)


def mule_id() -> int:
    return channels.mule_id()


def _reset_for_tests() -> None:
    global _stopping
    _specs.clear()
    _pids.clear()
    _last_spawn.clear()
    _stopping = False
