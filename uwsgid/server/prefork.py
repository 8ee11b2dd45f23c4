"""What the master does just before it forks the workers, so that they share more of its memory
(issue 20). A worker starts with the master's resident pages: each one the master holds for
nothing (free malloc memory) is in every worker's RSS, and each one a worker writes becomes its
private copy.

- server.worker_settings: what every worker derives from the options alone
  (uwsgid.server.worker_settings), made here once instead of in each new worker.
- gc.freeze() again: what the master made since uwsgid.main froze the start-up (the plugins'
  states, the Master itself) is not walked by a worker's collections either.
- malloc_trim(0): the free memory of malloc's heap (what the start-up and the apps' load freed:
  modules compiled from source, an app's temporaries) goes back to the kernel instead of being
  inherited by every worker. An app leaving 20 MB of temporaries at load: worker RSS 35 -> 16 MB;
  byte-compiled small apps (the bench's) leave little to trim.

Reached through _cffi_backend, which ./uwsgi (a cffi embedding) always has loaded: no ctypes,
no cffi parser in the master or the workers. Without it (a plain `python -m uwsgid`) the trim
is skipped."""

from __future__ import annotations

import gc

_libc = None


def _c_function(name: str, args: tuple[str, ...], result: str = "int"):
    """A libc function as a Python callable, or None (no _cffi_backend, no such symbol)."""
    global _libc
    try:
        import _cffi_backend as backend
        if _libc is None:
            _libc = backend.load_library(None)
        ftype = backend.new_function_type(tuple(backend.new_primitive_type(a) for a in args),
                                          backend.new_primitive_type(result), False)
        return _libc.load_function(ftype, name)
    except (ImportError, AttributeError, OSError):
        return None


def prepare(server) -> None:
    """Called by the master right before it forks its first workers (a few hundred microseconds).
    A respawned worker forks from a master that has not done this again: its free memory since
    is the master loop's own, small."""
    from uwsgid.server.worker_settings import WorkerSettings
    server.worker_settings = WorkerSettings(server.opts)
    gc.freeze()
    trim = _c_function("malloc_trim", ("size_t",))
    if trim is not None:
        trim(0)
