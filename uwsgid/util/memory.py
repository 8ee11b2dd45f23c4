"""A process's memory, from /proc/PID/statm: the one reader for the stats, the request log,
--reload-on-rss / --evil-reload-on-rss and the `uwsgi` modules' mem()."""

from __future__ import annotations

import os

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_vsz(pid: int | None = None) -> tuple[int, int]:
    """(rss, vsz) in bytes of process pid (this process when None); (0, 0) when it is gone."""
    if pid is not None and pid <= 0:
        return 0, 0
    try:
        with open("/proc/self/statm" if pid is None else f"/proc/{pid}/statm", "rb") as f:
            vsz, rss = f.read().split()[:2]
        return int(rss) * _PAGE, int(vsz) * _PAGE
    except (OSError, ValueError):
        return 0, 0
