"""Facts and settings of this process that the kernel keeps: the one place for prctl."""

from __future__ import annotations

import os
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> None:
    """PR_SET_PDEATHSIG(SIGKILL): the kernel kills this process when the thread that forked it
    (the master's main thread) dies, even by SIGKILL. Cleared by a uid change, kept across exec.
    parent_pid: the parent expected, to catch one that died before the prctl (None: unchecked).
    ctypes is imported here, not at the top: only the processes that ask carry it."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            os.write(2, b"[uwsgi] prctl(PR_SET_PDEATHSIG) failed: this process may outlive the master\n")
    except (OSError, AttributeError):
        pass
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)     # the parent died before the prctl: no signal will come


def reaped():
    """(pid, status) of each child that has ended, without waiting for any (waitpid(-1,
    WNOHANG) until none is left): the master's reaping and the worker's --reaper."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        except InterruptedError:
            continue
        if pid == 0:
            return
        yield pid, status
