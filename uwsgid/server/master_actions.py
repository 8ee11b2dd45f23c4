"""The master's named actions, under the names of uWSGI's C functions that do the same, so that
the places where uWSGI takes such a name work unchanged:

    hook-master-start = unix_signal:15 gracefully_kill_them_all     (uwsgid.server.user_hooks)
    hook-touch = /tmp/x call:uwsgi_reload_workers
    echo q > /path/to/master.fifo                                    (uwsgid.server.master_fifo)

Each action takes the Master (uwsgid.server.master) and returns nothing; the master's state
names live here because both the master and these actions read them.
"""

from __future__ import annotations

import os
import signal

from uwsgid.util.log import log

RUNNING, RELOADING, STOPPING, KILLING = "running", "reloading", "stopping", "killing"


def gracefully_kill_them_all(master) -> None:
    """Graceful stop: workers finish their requests, then the instance exits."""
    if master.state in (STOPPING, KILLING):
        return
    log("graceful shutdown triggered...")
    master.stop_gracefully()


def kill_them_all(master) -> None:
    """Brutal stop: requests in progress are cut."""
    if master.state != KILLING:
        log("SIGINT/SIGTERM received...killing workers...")
    master.kill_all()


def grace_them_all(master) -> None:
    """Graceful reload (SIGHUP)."""
    master.reload("...gracefully killing workers...")


def reap_them_all(master) -> None:
    """Brutal reload: the workers stop at once (requests cut), then the master re-execs."""
    if master.state != RUNNING:
        return
    log("...brutally killing workers...")
    master.state = RELOADING
    master.pending_respawn.clear()
    for child in list(master.children.values()):
        master._curse(child, signal.SIGINT)


def suspend_resume_them_all(master) -> None:
    master.toggle_pause()


def stats(master) -> None:
    """uWSGI's `stats`: the configuration and the request counters, in the log."""
    opts = master.opts
    lines = ["", ";uWSGI instance configuration", "[uwsgi]"]
    for key, value in opts.exported:
        lines.append(f"{key} = {'true' if value is None else value}")
    lines += [";end of configuration", ""]
    sb = master.server.scoreboard
    lines.append(f"\tworkers total requests: {sb.total_requests()}")
    lines.append("-----------------")
    for wid in range(1, master.server.numproc + 1):
        w = sb.worker(wid)
        lines.append(f"\tworker {wid} (pid: {w['pid']}) requests: {w['requests']} "
                     f"exceptions: {w['exceptions']}")
    lines.append("-----------------")
    for line in lines:
        log(line)


def reload_workers(master) -> None:
    """Graceful reload of the workers only (the master stays, apps are not reloaded unless lazy)."""
    if master.state != RUNNING:
        return
    for child in master._workers():
        if child.cursed_at is None:
            master._curse(child, signal.SIGHUP)


def brutally_reload_workers(master) -> None:
    if master.state != RUNNING:
        return
    for child in master._workers():
        log(f"killing worker {child.wid} (pid: {child.pid})")
        master._curse(child, signal.SIGINT)


def chain_reload(master) -> None:
    master.lifetime.chain_reload()


def go_cheap(master) -> None:
    master.lifetime.go_cheap()


def log_reopen(master) -> None:
    _log_call("reopen", "reopen the logs")


def log_rotate(master) -> None:
    _log_call("rotate", "rotate the logs")


def _log_call(name: str, what: str) -> None:
    # the log back ends (uwsgid.util.log) offer these once they have files to reopen or rotate
    from uwsgid.util import log as logmod
    fn = getattr(logmod, name, None)
    if fn is None:
        log(f"uwsgi: cannot {what}: not supported yet by this server's loggers")
        return
    if fn() is False:
        log(f"uwsgi: cannot {what}: the log is not a file (--logto, --daemonize)")


def update_pidfiles(master) -> None:
    from uwsgid.server import daemon
    for path in master.server.pidfiles:
        try:
            daemon.write_pidfile(path, os.getpid())
        except OSError as e:
            log(f"uwsgi: cannot write the pidfile {path}: {e.strerror}")


def cheaper_increase(master) -> None:
    """One more worker now (with --cheaper; the algorithm may cheap it again later)."""
    cheaper = master.cheaper
    if cheaper is None or master.state != RUNNING:
        log("uwsgi: cannot add a worker: --cheaper is not enabled")
        return
    alive = {c.wid for c in master._workers()}
    for wid in sorted(cheaper.cheaped):
        if wid not in alive:
            cheaper.cheaped.discard(wid)
            master.spawn_worker(wid, respawn=master.server.scoreboard.worker(wid)["last_spawn"] > 0)
            return
    log("uwsgi: cannot add a worker: all of them are running")


def cheaper_decrease(master) -> None:
    """One worker less now: the idle one spawned first is stopped gracefully (with --cheaper)."""
    cheaper = master.cheaper
    if cheaper is None or master.state != RUNNING:
        log("uwsgi: cannot remove a worker: --cheaper is not enabled")
        return
    running = [c for c in master._workers() if c.wid not in cheaper.cheaped and c.cursed_at is None]
    idle = [c for c in running if not master.server.scoreboard.busy_cores(c.wid)]
    if len(running) <= 1 or not idle:
        log("uwsgi: cannot remove a worker: no idle one, or it is the last")
        return
    oldest = min(idle, key=lambda c: c.spawned_at)
    cheaper.cheaped.add(oldest.wid)
    master._curse(oldest, signal.SIGTERM)


# uWSGI's function name -> action
ACTIONS = {
    "gracefully_kill_them_all": gracefully_kill_them_all,
    "kill_them_all": kill_them_all,
    "grace_them_all": grace_them_all,
    "reap_them_all": reap_them_all,
    "suspend_resume_them_all": suspend_resume_them_all,
    "stats": stats,
    "uwsgi_reload_workers": reload_workers,
    "uwsgi_brutally_reload_workers": brutally_reload_workers,
    "uwsgi_chain_reload": chain_reload,
    "uwsgi_go_cheap": go_cheap,
    "uwsgi_log_reopen": log_reopen,
    "uwsgi_log_rotate": log_rotate,
    "uwsgi_update_pidfiles": update_pidfiles,
    "uwsgi_cheaper_increase": cheaper_increase,
    "uwsgi_cheaper_decrease": cheaper_decrease,
}
