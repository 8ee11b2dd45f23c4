"""Touch files: --touch-reload and its kin (workers, chain, mules, spoolers, exec, signal,
logrotate, logreopen, a daemon's touch=, --hook-touch) watch files and act when one is touched,
all by uWSGI's rules (uwsgi_check_touches):

- the first look records each file's state; a file missing then is said once in the log;
- afterwards a file counts as touched when its mtime changed, when it appeared, or when it went.

uWSGI compares whole seconds and only a later mtime; here any change of the float mtime counts:
two touches within a second are two events, and a file replaced by an older copy (rsync keeps
mtimes) is a touch too.
"""

from __future__ import annotations

import os


def mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


class TouchFiles:
    """Files watched together, each with what it stands for (its path unless given: a command,
    a signal number, hook lines). changed() gives what the first file touched since the last
    look stands for, or None; the files after it are looked at next time."""

    __slots__ = ("entries", "seen")

    def __init__(self, entries=(), say=None):
        """entries: paths, or (path, what it stands for); say(line): where the first look tells
        of a missing file (the caller's log: uwsgid.util.log imports the loggers, which use this)."""
        self.entries = [(e, e) if isinstance(e, str) else (e[0], e[1]) for e in entries]
        self.seen: list[float | None] = []
        for path, _ in self.entries:
            t = mtime(path)
            if t is None and say is not None:
                say(f"unable to stat() {path}, events will be triggered as soon as the file is created")
            self.seen.append(t)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def changed(self):
        seen = self.seen
        for i, (path, what) in enumerate(self.entries):
            t = mtime(path)
            if t != seen[i]:
                seen[i] = t
                return what
        return None
