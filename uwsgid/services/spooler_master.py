"""The spooler processes' life, in the master (mules.py is the model): set up at master_start,
forked at the first master tick (after the apps are loaded, so what they registered, the
Python uwsgi.spooler and signal handlers, is inherited), respawned when they die (the master
reaps them and tells us through the `child_exited` hook; at most one respawn a second per
slot), killed by --spooler-harakiri, restarted by --touch-spoolers-reload, started on demand
with --spooler-cheap, and killed on stop and reload as uWSGI does: a task cut short stays in
its file, unlocked, and runs again. Also the stats JSON's "spoolers".
"""

from __future__ import annotations

import os
import signal
import time

from uwsgid.services import spool_file, spooler, spooler_process
from uwsgid.services.spooler import HARAKIRI, PID, RESPAWNS, RUNNING
from uwsgid.util.log import log
from uwsgid.util.touch import TouchFiles

_server = None
_pids: dict[int, int] = {}           # slot -> pid
_last_spawn: dict[int, float] = {}
_due: dict[int, float] = {}          # slot -> when to respawn it
_cursed: dict[int, float] = {}       # slot -> SIGKILL after (touch-spoolers-reload)
_touches = None                      # uwsgid.util.touch.TouchFiles of touch-spoolers-reload
_started = False
_stopping = False
_last_cheap_check = 0.0


def _master_running() -> bool:
    master = getattr(_server, "master", None)
    return master is None or getattr(master, "state", "running") == "running"


def _spawn(idx: int, respawn: bool = False) -> None:
    _last_spawn[idx] = time.monotonic()
    _due.pop(idx, None)
    if respawn:
        spooler.slot_set(idx, RESPAWNS, spooler.slot_get(idx, RESPAWNS) + 1)
    try:
        pid = os.fork()
    except OSError as exc:
        log(f"cannot fork the spooler on {spooler.dirs[idx]}: {exc.strerror}")
        _due[idx] = time.monotonic() + 1.0
        return
    if pid == 0:
        spooler_process.main(idx, _server)      # never returns
    _pids[idx] = pid
    spooler.slot_set(idx, PID, pid)
    log(f"spawned the uWSGI spooler on dir {spooler.dirs[idx]} with pid {pid}")


def supervise(now: float) -> None:
    """Master tick: the first spawn, due respawns, harakiri, touch-spoolers-reload, cheap mode."""
    global _started, _last_cheap_check, _touches
    settings = spooler.settings
    if not _started:
        _started = True
        _last_cheap_check = now
        _touches = TouchFiles(settings.touch, log)    # the first look at the files
        if not settings.cheap:
            for idx in range(len(spooler.dirs)):
                if not spooler.external[idx]:
                    _spawn(idx)
    for idx, at in list(_due.items()):
        if now >= at and idx not in _pids:
            _spawn(idx, respawn=True)
    wall = time.time()
    for idx, pid in list(_pids.items()):
        deadline = spooler.slot_get(idx, HARAKIRI)
        if 0 < deadline < wall:
            log(f"*** HARAKIRI ON THE SPOOLER (pid: {pid}) ***")
            spooler.slot_set(idx, HARAKIRI, 0)
            _kill(pid, signal.SIGKILL)
        cursed = _cursed.get(idx)
        if cursed is not None and now >= cursed:
            log(f"spooler {idx + 1} (pid: {pid}) is taking too much time to die...NO MERCY !!!")
            _cursed.pop(idx, None)
            _kill(pid, signal.SIGKILL)
    _check_touch(now)
    if settings.cheap and now - _last_cheap_check >= spooler.frequency():
        _last_cheap_check = now
        checked = set()
        for idx, d in enumerate(spooler.dirs):
            # one new process per dir and check, as uWSGI's cheap mode
            if spooler.external[idx] or idx in _pids or d in checked:
                continue
            checked.add(d)
            if spool_file.has_tasks(d):
                _spawn(idx, respawn=True)


def _check_touch(now: float) -> None:
    path = _touches.changed()
    if path is not None:
        log(f"*** {path} has been touched... spoolers reload !!! ***")
        for idx, pid in _pids.items():
            _kill(pid, signal.SIGHUP)       # the spooler ends after its current task
            _cursed[idx] = now + spooler.settings.reload_mercy


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def child_exited(pid: int, status: int) -> None:
    """Hook child_exited: one of ours died: respawn it (not sooner than a second after its
    last spawn: a spooler dying at start must not spin the master)."""
    idx = next((i for i, p in _pids.items() if p == pid), None)
    if idx is None:
        return
    del _pids[idx]
    _cursed.pop(idx, None)
    for field in (PID, RUNNING, HARAKIRI):
        spooler.slot_set(idx, field, 0)
    if _stopping or not _master_running():
        return
    if spooler.settings.cheap and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        log(f"spooler {spooler.dirs[idx]} ended")
        return
    log("OOOPS the spooler is no more...trying respawn...")
    now = time.monotonic()
    _due[idx] = max(now, _last_spawn.get(idx, 0.0) + 1.0)
    if _due[idx] <= now:
        _spawn(idx, respawn=True)


def stop(timeout: float = 5.0) -> None:
    """On stop and reload: SIGKILL the spoolers (uWSGI's way: the task cut short stays in its
    file) and reap them."""
    global _stopping
    _stopping = True
    for pid in _pids.values():
        log(f"killing the spooler with pid {pid}")
        _kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    for idx, pid in list(_pids.items()):
        while time.monotonic() < deadline:
            try:
                done, _status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break
            if done:
                break
            time.sleep(0.02)
        spooler.slot_set(idx, PID, 0)
    _pids.clear()


def pids() -> dict[int, int]:
    return dict(_pids)


# ---- hooks (registered by the package, uwsgid/services/__init__.py) ---------------------------

def master_start(server) -> None:
    global _server
    _server = server
    try:
        spooler.setup(getattr(server, "opts", None), getattr(server, "cwd", None))
    except ValueError as exc:
        log(f"uwsgi: {exc}")
        raise SystemExit(1) from None


def master_tick(server) -> None:
    if spooler.dirs and not _stopping and _master_running():
        supervise(time.monotonic())


def add_stats(out: dict) -> None:
    if spooler.dirs:
        out["spoolers"] = spooler.stats()


def shutdown(server) -> None:
    if spooler.dirs:
        stop()


def _reset_for_tests() -> None:
    global _server, _started, _stopping, _last_cheap_check, _touches
    for d in (_pids, _due, _cursed, _last_spawn):
        d.clear()
    _server = _touches = None
    _started = _stopping = False
    _last_cheap_check = 0.0
