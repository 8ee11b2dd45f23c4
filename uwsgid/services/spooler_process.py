"""A spooler process (forked by the master, spooler.py): it scans its spool dir, runs each task
through the language plugins' spooler hooks (Python first, then Lua, until one claims it), and
between scans handles the signals sent to target "spooler". uWSGI's core/spooler.c, step by step:

  scan        the dir's task files (--spooler-ordered: priority subdirectories first, lowest
              number first, each in version order); a task is taken under its file's fcntl lock
              (another spooler process, ours or uWSGI's, skips it meanwhile)
  run         SPOOL_OK: the file goes; SPOOL_RETRY (or an error, logged by the plugin): it stays
              for the next scan; SPOOL_IGNORE from every plugin: it stays, and is logged
  wait        --spooler-frequency seconds, or less: uwsgi.spool() wakes us with SIGUSR1; a
              signal for target "spooler" is handled as it comes
  recycle     after --spooler-max-tasks tasks, or on SIGHUP (touch-spoolers-reload) after the
              current task: exit 0, the master starts a new one

SIGTERM, SIGINT and SIGKILL end the process at once: the task it was running stays in its file,
unlocked by the kernel, and runs again. The process dies with the master (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import os
import select
import signal
import time

from uwsgid.plugins import api as core_api
from uwsgid.server import procname
from uwsgid.services import signal_receiver, signals, spool_file, spooler
from uwsgid.services.spooler import HARAKIRI, LAST_TASK, PID, RUNNING, TASKS
from uwsgid.util.log import log, log_exception
from uwsgid.util.process import die_with_parent

_recycle = False
_wake_r = -1


def main(idx: int, server) -> None:
    """The child's whole life: never returns."""
    code = 0
    try:
        _prepare(idx, server)
        _start_plugins()
        _loop(idx)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        log_exception(f"spooler {spooler.dirs[idx]} (pid: {os.getpid()}) crashed:")
        code = 1
    os._exit(code)


def _on_hup(signum, frame) -> None:
    global _recycle
    _recycle = True


def _prepare(idx: int, server) -> None:
    global _wake_r
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    for sig in (signal.SIGTSTP, signal.SIGPIPE, signal.SIGALRM, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_IGN)
    # SIGUSR1 (a new task) and SIGHUP only write to the wakeup pipe the loop polls
    _wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGUSR1, lambda s, f: None)
    signal.signal(signal.SIGHUP, _on_hup)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    _die_with_master()
    spooler.me = idx
    core_api.worker = None
    # the listening sockets are the workers' (a reload must find them closed here)
    for listener in getattr(server, "listeners", ()) or ():
        listener.close()
    for sock, _name in getattr(server, "router_sockets", ()) or ():
        sock.close()
    try:
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
    except OSError:
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, 0, 19)      # uWSGI runs its spoolers at the lowest priority
    except OSError:
        pass
    opts = getattr(server, "opts", None)
    if opts is not None:
        procname.name_process(opts, "uWSGI spooler")
    spooler.slot_set(idx, PID, os.getpid())
    spooler.slot_set(idx, TASKS, 0)
    spooler.slot_set(idx, RUNNING, 0)
    spooler.slot_set(idx, HARAKIRI, 0)
    signals.ensure()


def _die_with_master() -> None:
    die_with_parent()


def _start_plugins() -> None:
    """The plugins' start hooks (post-fork work, loading the Lua app), then --spooler-import."""
    for plugin in spooler.plugins():
        if plugin.start is not None:
            try:
                plugin.start()
            except Exception:
                log_exception(f"spooler: the {plugin.name} plugin failed to start:")
    for spec in spooler.settings.imports:
        claimed = False
        for plugin in spooler.plugins():
            if plugin.load is not None and plugin.load(spec):
                claimed = True
                break
        if not claimed:
            log(f"--spooler-import {spec}: no loaded plugin runs it (a Python module or .py file needs "
                "the Python plugin, a .lua file the Lua plugin)")


# ---- the loop --------------------------------------------------------------------------------

def _loop(idx: int) -> None:
    directory = spooler.dirs[idx]
    sig_end = spooler.spoolers_end()
    poller = select.poll()
    poller.register(sig_end.fileno(), select.POLLIN)
    poller.register(_wake_r, select.POLLIN)
    last_seen = 0
    while True:
        os.chdir(directory)
        _scan(idx, directory)
        if _recycle:
            log(f"[spooler {directory} pid: {os.getpid()}] reloading ...")
            raise SystemExit(0)
        if spooler.settings.cheap:
            last = spooler.slot_get(idx, LAST_TASK)
            if last == last_seen:
                log(f"cheaping spooler {directory} ...")
                raise SystemExit(0)
            last_seen = last
        for fd, ev in poller.poll(spooler.frequency() * 1000):
            if fd == _wake_r:
                _drain_wake()
            elif ev & select.POLLIN:
                _signals(idx, sig_end)
            elif ev & (select.POLLHUP | select.POLLERR):
                poller.unregister(fd)


def _drain_wake() -> None:
    try:
        while os.read(_wake_r, 256):
            pass
    except (BlockingIOError, InterruptedError):
        pass


def _signals(idx: int, sock) -> None:
    for num in signal_receiver.drain(sock, run=False):
        _with_harakiri(idx, lambda n=num: signals.dispatch(n))
        if spooler.settings.signal_as_task:
            _count_task(idx)


def _with_harakiri(idx: int, fn):
    secs = spooler.settings.harakiri
    if secs:
        spooler.slot_set(idx, HARAKIRI, int(time.time()) + secs)
    try:
        return fn()
    finally:
        if secs:
            spooler.slot_set(idx, HARAKIRI, 0)


def _count_task(idx: int) -> None:
    tasks = spooler.slot_get(idx, TASKS) + 1
    spooler.slot_set(idx, TASKS, tasks)
    limit = spooler.settings.max_tasks
    if limit and tasks >= limit:
        log(f"[spooler {spooler.dirs[idx]} pid: {os.getpid()}] maximum number of tasks reached ({limit}) "
            "recycling ...")
        raise SystemExit(0)


def _scan(idx: int, directory: str) -> None:
    ordered = spooler.settings.ordered
    for name in spool_file.entries(directory, ordered):
        if ordered and name.isdigit():
            if spool_file.is_priority_dir(directory, name):
                sub = os.path.join(directory, name)
                os.chdir(sub)               # a task's cwd is its own dir, as uWSGI's
                _scan(idx, sub)
                os.chdir(directory)
            continue
        _run_one(idx, directory, name)
        if _recycle:
            return


def _run_one(idx: int, directory: str, name: str) -> None:
    pid = os.getpid()
    home = spooler.dirs[idx]
    try:
        task = spool_file.take(directory, name)
    except spool_file.Corrupt as exc:
        log(f"[spooler {home} pid: {pid}] corrupted task {name} ({exc}): removed")
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            pass
        return
    if task is None:
        return
    quiet = spooler.settings.quiet
    claimed = False
    try:
        spooler.slot_set(idx, RUNNING, 1)
        spooler.slot_set(idx, LAST_TASK, int(time.time()))
        if not quiet:
            log(f"[spooler {home} pid: {pid}] managing request {name} ...")
        if spooler.settings.chdir:
            try:
                os.chdir(spooler.settings.chdir)
            except OSError as exc:
                log(f"[spooler] chdir() to {spooler.settings.chdir}: {exc.strerror}")
        for plugin in spooler.plugins():
            started = time.time()
            ret = _with_harakiri(idx, lambda p=plugin: _call(p, task))
            if ret == spooler.SPOOL_IGNORE:
                continue
            claimed = True
            spooler.slot_set(idx, TASKS, spooler.slot_get(idx, TASKS) + 1)
            if ret == spooler.SPOOL_OK:
                if not quiet:
                    log(f"[spooler {home} pid: {pid}] done with task {name} after {int(time.time() - started)} seconds")
                task.done()
            break
    finally:
        task.close()
        spooler.slot_set(idx, RUNNING, 0)
    if not claimed:
        log("unable to find the spooler function, have you loaded it into the spooler process ?")
    limit = spooler.settings.max_tasks
    if limit and spooler.slot_get(idx, TASKS) >= limit:
        log(f"[spooler {home} pid: {pid}] maximum number of tasks reached ({limit}) recycling ...")
        raise SystemExit(0)
    os.chdir(directory)


def _call(plugin, task) -> int:
    try:
        ret = plugin.run(os.fsencode(task.name), task.args, task.body)
    except Exception:
        log_exception(f"[spooler] the {plugin.name} plugin failed on task {task.name}:")
        return spooler.SPOOL_RETRY
    try:
        return int(ret)
    except (TypeError, ValueError):
        return spooler.SPOOL_RETRY
