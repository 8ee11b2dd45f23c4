"""Locks shared by every process and thread of the instance: a threading.Lock (threads of one
process) in front of an fcntl byte-range lock (processes). fcntl locks die with their process, so a
worker killed by harakiri while holding a lock cannot wedge the others (a fork-shared semaphore
would). The lock file (anonymous) is created by the master before fork; workers inherit its fd.

User locks are numbered 0..--locks (lock 0 always exists, as in uWSGI); the cache, metrics and
signal table take further byte offsets in the same file.
"""

from __future__ import annotations

import fcntl
import os
import struct
import threading
import weakref

_FLOCK = struct.Struct("hhqqi4x")   # struct flock on Linux x86_64/aarch64 (native layout)
_fd = -1
_next_offset = 0
_all: "weakref.WeakSet[ProcessLock]" = weakref.WeakSet()
_user: list["ProcessLock"] = []


def _lock_fd() -> int:
    global _fd
    if _fd < 0:
        # An anonymous file (fcntl locks work on it as on any file): no temp dir to pick, and
        # no `tempfile` import, which costs every worker ~1 MB of RSS (shutil, random, bz2...).
        # Close-on-exec: forked workers inherit it anyway; exec'd children need not.
        try:
            fd = os.memfd_create("uwsgid-locks", os.MFD_CLOEXEC)
        except (AttributeError, OSError):   # no memfd (not Linux, or an old kernel)
            import tempfile
            fd, path = tempfile.mkstemp(prefix="uwsgid-locks-")
            os.unlink(path)
            os.set_inheritable(fd, False)
        _fd = fd
    return _fd


class ProcessLock:
    """Not reentrant, like uWSGI's locks. acquire/release from any thread of the holder process."""

    __slots__ = ("offset", "_t", "__weakref__")

    def __init__(self):
        global _next_offset
        _lock_fd()
        self.offset = _next_offset
        _next_offset += 1
        self._t = threading.Lock()
        _all.add(self)

    def acquire(self) -> None:
        self._t.acquire()
        try:
            fcntl.lockf(_fd, fcntl.LOCK_EX, 1, self.offset)
        except BaseException:
            self._t.release()
            raise

    def release(self) -> None:
        if not self._t.locked():
            raise RuntimeError("release of an unlocked lock")
        try:
            fcntl.lockf(_fd, fcntl.LOCK_UN, 1, self.offset)
        finally:
            self._t.release()

    def locked(self) -> bool:
        """True when any thread of any process holds it (a snapshot)."""
        if not self._t.acquire(blocking=False):
            return True
        try:
            try:
                fcntl.lockf(_fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, self.offset)
            except OSError:
                return True
            fcntl.lockf(_fd, fcntl.LOCK_UN, 1, self.offset)
            return False
        finally:
            self._t.release()

    def holder(self) -> int:
        """The pid of another process holding it (0: free or held by this process), from
        F_GETLK: what the stats JSON shows for each lock, as uWSGI does."""
        req = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, self.offset, 1, 0)
        try:
            kind, _w, _s, _l, pid = _FLOCK.unpack(fcntl.fcntl(_fd, fcntl.F_GETLK, req))
        except OSError:
            return 0
        return 0 if kind == fcntl.F_UNLCK else pid

    __enter__ = acquire

    def __exit__(self, *exc) -> None:
        self.release()

    def _after_fork(self) -> None:
        # fcntl locks are not inherited: a thread lock copied in the held state (another
        # thread of the parent held it at fork time) would never be released here. Reset in
        # place (threading's own way): no new object written into the worker's pages.
        self._t._at_fork_reinit()


def _after_fork_in_child() -> None:
    for lk in list(_all):
        lk._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def setup(user_locks: int) -> None:
    """Create locks 0..user_locks (before fork). Idempotent for the same count."""
    if user_locks < 0:
        raise ValueError(f"--locks must be >= 0 (got {user_locks})")
    while len(_user) < user_locks + 1:
        _user.append(ProcessLock())


def _get(n: int) -> ProcessLock:
    if not _user:
        setup(0)
    if n < 0 or n >= len(_user):
        raise ValueError(f"lock {n} does not exist: valid locks are 0..{len(_user) - 1} (set --locks N for more)")
    return _user[n]


def lock(n: int = 0) -> None:
    _get(n).acquire()


def unlock(n: int = 0) -> None:
    lk = _get(n)
    try:
        lk.release()
    except RuntimeError:
        raise ValueError(f"unlock({n}): lock {n} is not held by this process") from None


def is_locked(n: int = 0) -> bool:
    return _get(n).locked()


def count() -> int:
    return len(_user)


def stats() -> list[dict]:
    """uWSGI's stats "locks": [{"user 0": pid holding it or 0}, ...]."""
    return [{f"user {i}": lk.holder()} for i, lk in enumerate(_user)]
