"""--py-autoreload N (development): every N seconds a thread in the worker checks the mtime of
every loaded module's file; when one changed, the whole instance reloads gracefully (SIGHUP to
the master), as uWSGI's python reloader does."""

from __future__ import annotations

import os
import signal
import sys
import threading

from uwsgid.plugins import api
from uwsgid.util.log import log


def _module_files() -> dict[str, float]:
    out = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path:
            continue
        if path.endswith((".pyc", ".pyo")):
            path = path[:-1]
        try:
            out[path] = os.stat(path).st_mtime
        except OSError:
            pass
    return out


def _watch(interval: float, stop: threading.Event, known: dict[str, float]) -> None:
    while not stop.wait(interval):
        for path, mtime in _module_files().items():
            old = known.get(path)
            if old is not None and mtime != old:
                log(f"[uwsgi-python-reloader] module/file {path} has been modified")
                server = api.server
                master = getattr(server, "master_pid", 0) if getattr(server, "has_master", False) else 0
                try:
                    os.kill(master or os.getpid(), signal.SIGHUP)
                except OSError:
                    pass
                return
            known.setdefault(path, mtime)


def start(interval: float) -> threading.Event:
    stop = threading.Event()
    # the baseline now, before the worker serves: taken in the thread, it could already include
    # a change made right after the first request, which would then never be seen
    known = _module_files()
    threading.Thread(target=_watch, args=(float(interval), stop, known), name="uwsgi-python-reloader",
                     daemon=True).start()
    return stop
