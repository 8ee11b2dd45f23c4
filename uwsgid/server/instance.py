"""The running instance: what the master, the workers and the plugins share (uWSGI's
`struct uwsgi_server`), and its teardown. Built by uwsgid.main; reachable from a plugin as
uwsgid.plugins.api.server.
"""

from __future__ import annotations

import os
import time

import uwsgid
from uwsgid.server import daemon


class Server:
    """What the master, the workers and the plugins share (see uwsgid.plugins.contract)."""

    def __init__(self, opts, argv: list[str]):
        self.opts = opts
        self.argv = list(argv)
        self.listeners: list = []
        self.plugins: dict = {}
        self.scoreboard = None
        self.master_pid = os.getpid()
        self.numproc = max(1, int(opts.processes or 1))
        # --gevent N is uWSGI's shortcut for N async cores (the cffi plugin sets --async from it
        # later, after the scoreboard is sized from this)
        cores = opts.get("gevent") or opts.get("async")
        self.cores = max(1, int(cores or 1)) * max(1, int(opts.threads or 1))
        self.has_master = bool(opts.master)
        self.version = uwsgid.__version__
        self.started_at = time.time()
        self.cwd = os.getcwd()
        self.master = None          # uwsgid.server.master.Master (None in single-process mode)
        self.router_sockets: list = []   # --http router listening sockets (uwsgid.server.router)
        self.pidfiles: list[str] = []    # written, absolute (removed by --vacuum)
        self.unreadable_paths: list[str] = []   # sys.path dirs unreadable after --uid/--gid

    def worker_pids(self) -> dict[int, int]:
        """wid -> pid of the running workers (0 while one is being respawned)."""
        sb = self.scoreboard
        return {wid: sb.pid(wid) for wid in range(1, self.numproc + 1)} if sb is not None else {}

    @property
    def lazy_apps(self) -> bool:
        return bool(self.opts.lazy_apps or self.opts.lazy)


def cleanup(server) -> None:
    """--vacuum: unix sockets and pidfiles go away with the instance."""
    if not server.opts.vacuum:
        return
    for lst in server.listeners:
        path = getattr(lst, "path", None)
        if path and not str(path).startswith("@"):
            daemon.remove_file(path)
    for s, name in server.router_sockets:
        if name.startswith("/"):
            daemon.remove_file(name)
    for path in server.pidfiles:
        daemon.remove_file(path)
