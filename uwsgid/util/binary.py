"""Facts about the ./uwsgi executable this process may run in (core/main.c + cffi's embedding
API): whether it does, its path, and the process title it can set. uwsgid.embed binds the
embedding module here when the executable starts; under plain `python -m uwsgid` nothing is
bound and the answers say so.
"""

from __future__ import annotations

import os
import sys

BUILD: dict = {}                 # what the build baked: root, profile, lib_dir, plugin_dir, home, embedded
_lib = None


def bind(lib, build: dict) -> None:
    """Called once by uwsgid.embed.run: `lib` is the embedding module's C library."""
    global _lib
    _lib = lib
    BUILD.clear()
    BUILD.update(build)


def active() -> bool:
    """True inside the ./uwsgi executable."""
    return _lib is not None


def executable() -> str | None:
    """Path of the running ./uwsgi (None under plain python)."""
    if not active():
        return None
    try:
        path = os.readlink("/proc/self/exe")
        # rebuilt while running: the new binary is at the same path
        return path[:-len(" (deleted)")] if path.endswith(" (deleted)") else path
    except OSError:
        return os.path.abspath(sys.argv[0]) if sys.argv else None


def set_proctitle(title: str) -> bool:
    """Name this process in ps (argv memory and comm). False when not in the executable."""
    if _lib is None:
        return False
    return _lib.uwsgi_set_proctitle(title.encode("utf-8", "replace")) == 0
