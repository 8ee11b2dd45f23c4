"""--static-cache-paths: which file a path resolved to, kept for SECS in a uWSGI cache.

uWSGI (core/static.c uwsgi_file_serve, core/uwsgi.c): the key is the path the request names
(DOCROOT/PATH_INFO, or the mapped file itself), the value the real path it resolved to, stored
for SECS (--static-cache-paths SECS) in the --cache2 cache named by --static-cache-paths-name,
else in the default (first) cache; while the item lives, realpath() and the traversal check are
skipped. No cache configured: "caching of static paths requires uWSGI caching !!!"; an unknown
name: 'unable to find cache "NAME"'; both stop the start. The items are the cache's own: apps see
them (cache_get), every worker shares them, and they expire as any item does.

Here a hit skips the resolution (opening the named path, the kernel's answer to "which file is
this" from /proc/self/fd, the --static-index search for a directory): the real path is opened
directly; only the string check that it is under the root (or a --static-safe directory) stays,
as in uWSGI. For a directory the item holds its index file's real path (uWSGI's, the directory's,
then stats the index names again). What a stale item can do is bounded:
  * the real path is opened with openat2(RESOLVE_NO_SYMLINKS) (Linux 5.6+; else O_NOFOLLOW, the
    last component only), so a file or directory replaced by a symlink is not followed out of
    the root: the item is dropped and the path resolved again (and refused when it leads out);
  * a file removed is not found by its real path either: the item is dropped, the path resolved
    again;
  * what remains for up to SECS, as in uWSGI: a path keeps its file while another root (or
    another --static-index name) would now give a different one inside the roots.
Our /proc check is remembered per worker anyway (mapping.py); the shared item saves it for the
other workers and for the index search, and makes the option's effect uWSGI's.

The cache lives in uwsgid.services, a layer above this one: it is handed in with provide().
"""

from __future__ import annotations

import errno
import os

from uwsgid.config.options import Option, declare

declare(
    Option("static-cache-paths", kind="int", default=0, group="static", needs_master=True, metavar="SECS",
           help="keep the real path each static file request resolved to in a cache (uWSGI's --cache2) for "
                "SECS, shared by the workers: while it lives the path is not resolved and checked again"),
    Option("static-cache-paths-name", kind="str", group="static", needs_master=True, metavar="CACHE",
           help="the --cache2 cache that --static-cache-paths uses (default: the first cache)"),
)

_provider = None     # name (bytes, None = the default cache) -> a cache; from uwsgid.services


class PathCacheError(Exception):
    """An unusable --static-cache-paths setting: one line, the instance does not start."""


def provide(lookup) -> None:
    """Hand in the cache registry (uwsgid.services does, at import): lookup(name) returns the
    cache (get(key), set(key, value, expires, update=True), delete(key)) or raises ValueError."""
    global _provider
    _provider = lookup


class PathCache:
    """The (path -> real path) items of --static-cache-paths in one uWSGI cache."""

    __slots__ = ("cache", "secs", "name", "hits")

    def __init__(self, cache, secs: int, name: str):
        self.cache = cache
        self.secs = secs
        self.name = name
        self.hits = 0        # per process: resolutions skipped

    @classmethod
    def from_options(cls, opts):
        """The PathCache the options ask for, or None; PathCacheError when unusable."""
        raw = opts.get("static-cache-paths", 0) or 0
        name = opts.get("static-cache-paths-name", None) or None
        try:
            secs = int(raw)
        except (TypeError, ValueError):
            raise PathCacheError(f"--static-cache-paths {raw}: not a number of seconds") from None
        if secs < 0:
            raise PathCacheError(f"--static-cache-paths {raw}: must be a number of seconds >= 0 (0: off)")
        if not secs:
            if name:
                raise PathCacheError(f"--static-cache-paths-name {name}: has no effect without "
                                     f"--static-cache-paths SECS")
            return None
        if _provider is None:
            raise PathCacheError("--static-cache-paths: the caches are not available in this process")
        try:
            cache = _provider(os.fsencode(name) if name else None)
        except ValueError as e:
            if name:
                raise PathCacheError(f'unable to find cache "{name}" (--static-cache-paths-name): {e}') from None
            raise PathCacheError("caching of static paths requires uWSGI caching !!! (--static-cache-paths "
                                 "needs a --cache2 name=NAME,items=N)") from None
        return cls(cache, secs, name or "the default cache")

    def describe(self) -> str:
        return f"[uwsgi-static] resolved paths cached for {self.secs} s in {self.name}"

    def get(self, path: bytes):
        real = self.cache.get(path)
        return bytes(real) if real else None

    def put(self, path: bytes, real: bytes) -> None:
        self.cache.set(path, real, self.secs, update=True)

    def drop(self, path: bytes) -> None:
        self.cache.delete(path)


# ---- opening a real path without following symlinks ----------------------------------------

_O_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
_RESOLVE_NO_SYMLINKS = 0x04
# openat2 has number 437 on every architecture of the unified syscall table (Linux 5.6+)
_NR = 437 if os.uname().machine in ("x86_64", "aarch64", "riscv64", "ppc64le", "s390x") else None
_openat2 = None       # (syscall, args...) once set up: ctypes is loaded on first use only


def _setup_openat2():
    """The openat2(2) call through ctypes, or False where it cannot be made (the first open of
    a cached path pays for ctypes; a worker that never takes that path does without it)."""
    global _openat2
    if _NR is None:
        _openat2 = False
        return _openat2
    import ctypes

    class _OpenHow(ctypes.Structure):
        _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]

    try:
        syscall = ctypes.CDLL(None, use_errno=True).syscall
        syscall.restype = ctypes.c_long
    except (OSError, AttributeError):
        _openat2 = False
        return _openat2
    how = _OpenHow(_O_FLAGS, 0, _RESOLVE_NO_SYMLINKS)
    # syscall(2) reads longs: no argument left 32 bits wide
    _openat2 = (syscall, ctypes.c_long(_NR), ctypes.c_long(-100), ctypes.byref(how),
                ctypes.c_size_t(ctypes.sizeof(_OpenHow)), ctypes.get_errno, how)
    return _openat2


def open_no_symlinks(path: bytes) -> int:
    """Open a real path for reading, refusing every symlink on the way (OSError ELOOP, or
    ENOENT...). Without openat2 (old kernel, a seccomp filter) only the last component is
    checked (O_NOFOLLOW)."""
    global _openat2
    if b"\0" in path:
        raise OSError(errno.ENOENT, "NUL in a path", path)
    call = _openat2 if _openat2 is not None else _setup_openat2()
    if call:
        syscall, nr, at_fdcwd, how_ref, how_size, get_errno, _ = call
        fd = syscall(nr, at_fdcwd, path, how_ref, how_size)
        if fd >= 0:
            return fd
        err = get_errno()
        if err not in (errno.ENOSYS, errno.EPERM, errno.E2BIG, errno.EINVAL):
            raise OSError(err, os.strerror(err), path)
        _openat2 = False     # not available here: O_NOFOLLOW from now on
    return os.open(path, _O_FLAGS | os.O_NOFOLLOW)
