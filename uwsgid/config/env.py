"""UWSGI_<OPTION> environment variables: upper case, `_` for `-` (UWSGI_SOCKET=:3031,
UWSGI_HTTP_SOCKET_MODIFIER1=6). They come first, so anything else given overrides them.
Variables uWSGI itself uses to talk to its own re-exec'd processes are not options."""

from __future__ import annotations

import os

from uwsgid.config.entries import Entry

# Set by a master that re-execs itself for a graceful reload (uwsgid.server.reexec): the config
# is then read a second time, and what was said about it the first time is not said again.
ENV_RELOADING = "UWSGI_RELOADING"

_INTERNAL = {"RELOADS", "VASSALS_DIR", "EMPEROR_FD", "BROODLORD_NUM", "EMPEROR_FD_CONFIG",
             "EMPEROR_PROXY", "JAIL_PID", "ORIGINAL_PROC_NAME",
             # ours: the master's re-exec hand-over (uwsgid/server/reexec.py, sockets.py) and start-up knobs
             "RELOADING", "HTTP_FDS", "LISTEN_FDS", "EMBED_MAIN", "PACKET_PURE"}


def entries(environ=None) -> list[Entry]:
    environ = os.environ if environ is None else environ
    out = []
    for name, value in environ.items():
        if not name.startswith("UWSGI_") or len(name) == 6:
            continue
        rest = name[6:]
        if rest in _INTERNAL:
            continue
        out.append(Entry(rest.lower().replace("_", "-"), value, "environment", display=name))
    return out
