"""Binary reloading: the master re-execs itself on a graceful reload (so app code is really
reloaded) while keeping its listening sockets open, as uWSGI does.

The workers' listeners are described by uwsgid.net.sockets.export_listeners (UWSGI_LISTEN_FDS,
adopted by sockets.bind_all in the new master); the --http router's sockets ride in
UWSGI_HTTP_FDS (adopted by uwsgid.server.router.bind). The fds are made inheritable, so connections
that arrive during the reload wait in the kernel's backlog: nothing is refused.
"""

from __future__ import annotations

import os
import sys

from uwsgid.config.env import ENV_RELOADING
from uwsgid.util import binary

# How this process was started, when not as ./uwsgi: `python -m uwsgid` (uwsgid/__main__.py)
# sets its own prefix. The master re-execs itself the same way on a graceful reload.
launcher: list[str] | None = None

ENV_HTTP_FDS = "UWSGI_HTTP_FDS"


def command(argv: list[str]) -> list[str]:
    """The argv that starts this server again: ./uwsgi ARGS, or the Python launcher ARGS."""
    if launcher:
        return [*launcher, *argv]
    exe = binary.executable()
    if exe:
        # rebuilt while running: /proc/self/exe names the old inode "PATH (deleted)"; the new
        # binary at PATH is the one to run (a reload is how uWSGI users upgrade)
        if exe.endswith(" (deleted)"):
            exe = exe[: -len(" (deleted)")]
        return [exe, *argv]
    return [sys.executable, "-m", "uwsgid", *argv]


def binary_path() -> str:
    return command([])[0]


def exec_master(server) -> None:
    """Replace this process by a fresh master with the same argv and the same listening sockets.
    Returns only if exec failed (the caller then stops)."""
    from uwsgid.net import sockets
    os.environ[sockets.ENV_FDS] = sockets.export_listeners(server.listeners)
    routers = []
    for s, name in server.router_sockets:
        os.set_inheritable(s.fileno(), True)
        routers.append({"fd": s.fileno(), "name": name})
    import json  # only a reload needs it: not carried into every worker
    os.environ[ENV_HTTP_FDS] = json.dumps(routers)
    os.environ[ENV_RELOADING] = "1"
    try:
        os.chdir(server.cwd)
    except OSError:
        pass
    args = command(server.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(args[0], args)


def can_exec(server) -> bool:
    exe = command(server.argv)[0]
    return os.path.isfile(exe) and os.access(exe, os.X_OK)


def is_reexec() -> bool:
    return os.environ.pop(ENV_RELOADING, None) is not None


def inherited_router_sockets() -> dict[str, int]:
    """--http ADDR -> fd passed by the previous master (empty on a first start)."""
    text = os.environ.pop(ENV_HTTP_FDS, None)
    if not text:
        return {}
    import json
    try:
        return {d["name"]: int(d["fd"]) for d in json.loads(text)}
    except (ValueError, KeyError, TypeError):
        return {}
