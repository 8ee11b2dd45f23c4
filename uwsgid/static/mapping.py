"""Which file a request names: the static roots, their order, and the traversal checks.

    Mapper(opts).find(path_info, vars) -> None     not a static file: the next root, then the app
                                        -> REFUSED  outside its root: 403, logged once
                                        -> Found    an open regular file (fd, stat, real path)

The roots, tried in this order, as uWSGI does (core/protocol.c uwsgi_parse_vars, end):
  --check-static DIR      DIR + PATH_INFO, for every request (--static-check is its alias)
  --static-map M=DIR      PATH_INFO starting with M: DIR + the rest of PATH_INFO
  --static-map2 M=DIR     PATH_INFO starting with M: DIR + the whole PATH_INFO
  --check-static-docroot  the request's DOCUMENT_ROOT (set by the front end) + PATH_INFO
--static-map and --static-map2 are tried longest mountpoint first (for one mountpoint, in the
order given: "--static-map /s=/a --static-map /s=/b" looks in /a, then /b); uWSGI tries them
in the order given. The mountpoint is a plain prefix, as uWSGI's (`/static` also maps
`/staticfoo` to DIR/foo). A DIR that is a file is served for every path under its mountpoint
(`--static-map /favicon.ico=/srv/icons/site.ico`). The first root holding a regular file wins;
a directory is served through the first --static-index file in it, else passed on. Only GET
and HEAD are static; a PATH_INFO (then a file) ending with a --static-skip-ext suffix is not.

Traversal (uWSGI: "[uwsgi-fileserve] security error: F is not under ROOT or a safe path"): the
file is opened first and its real path read back from the kernel (/proc/self/fd), so what is
checked is what is sent, symlinks included (realpath() then open() would leave a race); the
answer is remembered for that path and that very file (device, inode, ctime: see _verified). A
file whose real path is not under its root's real path (nor under a --static-safe directory)
is refused. A PATH_INFO whose `..` climbs above its root is refused before the file system is
asked (the target may not even exist), unless it lands under a --static-safe directory. The
protocol layer has already decoded PATH_INFO (`%2e%2e` is `..` here); it is not decoded again.
uWSGI passes a refused request on to the app; we answer 403 (issue 14), with one log line.

With --static-cache-paths (pathcache.py) a path's real path is looked up in a uWSGI cache first;
a hit opens that real path without following symlinks and skips all of the above but the prefix
check; a successful resolution is stored there.
"""

from __future__ import annotations

import os
import stat as _stat

from uwsgid.config.options import Option, declare
from uwsgid.static.pathcache import open_no_symlinks
from uwsgid.util.log import log

declare(
    Option("check-static", kind="str", multi=True, group="static", aliases=("static-check",), metavar="DIR",
           help="serve DIR + PATH_INFO when that file exists, before the app (several allowed, tried in order)"),
    Option("check-static-docroot", kind="flag", group="static",
           help="serve DOCUMENT_ROOT + PATH_INFO when that file exists (DOCUMENT_ROOT as the front end sends it)"),
    Option("static-map", kind="str", multi=True, group="static", metavar="MOUNTPOINT=DIR",
           help="serve PATH_INFO under MOUNTPOINT from DIR + the rest of PATH_INFO (or DIR itself, when it is a "
                "file); several allowed, the longest MOUNTPOINT first, then in the order given; a file not "
                "found goes to the next map, then to the app"),
    Option("static-map2", kind="str", multi=True, group="static", metavar="MOUNTPOINT=DIR",
           help="like --static-map, but DIR + the whole PATH_INFO (the mountpoint kept)"),
    Option("static-index", kind="str", multi=True, group="static", metavar="FILE",
           help="for a directory, serve the first of these files in it (several allowed: index.html, ...)"),
    Option("static-skip-ext", kind="str", multi=True, group="static", metavar="EXT",
           help="never serve as static a PATH_INFO or file ending with EXT (.php, ...): the app gets it"),
    Option("static-safe", kind="str", multi=True, group="static", metavar="DIR",
           help="serve a static file whose real path (symlinks followed) is under DIR even when it is "
                "outside its map's directory"),
)

O_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC   # NONBLOCK: a FIFO must not hang the worker
KNOWN_MAX = 4096
_PROC_FD = os.path.isdir("/proc/self/fd")


class StaticConfigError(Exception):
    """An unusable static option: one line, the instance does not start."""


class _Refused:
    __repr__ = lambda self: "REFUSED"


REFUSED = _Refused()


class Found:
    """An open regular file to serve. The receiver owns fd (closes it, or hands it on)."""

    __slots__ = ("fd", "real", "root", "st")

    def __init__(self, fd: int, st, real: bytes, root):
        self.fd = fd
        self.st = st
        self.real = real
        self.root = root


class Root:
    """A directory (or file) requests are mapped to."""

    __slots__ = ("given", "is_file", "kind", "mount", "real", "whole")

    def __init__(self, kind: str, mount: bytes, given: str, whole: bool):
        self.kind = kind          # the option, for the log
        self.mount = mount        # PATH_INFO prefix (b"" for --check-static)
        self.given = given        # DIR as written
        self.real = None          # its realpath, once it exists
        self.is_file = False
        self.whole = whole        # append the whole PATH_INFO (map2, check-static), else the rest

    def resolve(self) -> bool:
        try:
            real = os.path.realpath(os.fsencode(self.given), strict=True)
            st = os.stat(real)
        except (OSError, ValueError):
            return False
        self.is_file = _stat.S_ISREG(st.st_mode)
        self.real = real
        return True

    def __repr__(self) -> str:
        return f"--{self.kind} {self.mount.decode('latin-1')}={self.given}"


def _under(path: bytes, prefix: bytes) -> bool:
    """path is prefix or inside it (a real prefix of whole components: /var/www2 is not under /var/www)."""
    if prefix == b"/":
        return path[:1] == b"/"
    return path == prefix or (path.startswith(prefix) and path[len(prefix):len(prefix) + 1] == b"/")


def _climbs(rel: bytes) -> bool:
    """rel's `..` components go above where it starts (lexically)."""
    depth = 0
    for part in rel.split(b"/"):
        if part == b"..":
            if depth == 0:
                return True
            depth -= 1
        elif part and part != b".":
            depth += 1
    return False


def real_path_of(fd: int, path: bytes) -> bytes:
    """The real path of an open file: what the kernel says it opened."""
    if _PROC_FD:
        try:
            return os.readlink(b"/proc/self/fd/%d" % fd)
        except OSError:
            pass
    return os.path.realpath(path)


class Mapper:
    def __init__(self, opts):
        get = opts.get
        roots = [Root("check-static", b"", d, True) for d in get("check-static", []) or []]
        maps = []
        for kind in ("static-map", "static-map2"):
            for value in get(kind, []) or []:
                mount, eq, d = value.partition("=")
                if not eq or not d:
                    raise StaticConfigError(f"--{kind} {value}: invalid document root in static map, "
                                            f"syntax mountpoint=docroot")
                maps.append(Root(kind, os.fsencode(mount), d, kind == "static-map2"))
        maps.sort(key=lambda r: -len(r.mount))     # stable: same length keeps the order given
        self.roots = roots + maps
        self.docroot = bool(get("check-static-docroot", False))
        self.index = [os.fsencode(i) for i in get("static-index", []) or [] if i]
        self.skip = tuple(os.fsencode(e) for e in get("static-skip-ext", []) or [] if e)
        safe = []
        for d in get("static-safe", []) or []:
            b = os.fsencode(d).rstrip(b"/") or b"/"
            safe.append(b)
            r = os.path.realpath(b)
            if r != b:
                safe.append(r)
        self.safe = tuple(safe)
        self._docroots: dict = {}
        self._known: dict = {}      # path opened -> (file identity, real path) (see _verified)
        self.paths = None           # a pathcache.PathCache with --static-cache-paths (set by serve.Static)

    @property
    def active(self) -> bool:
        return bool(self.roots) or self.docroot

    def describe(self) -> list[str]:
        """uWSGI's start-up lines for the roots."""
        out = []
        for r in self.roots:
            if r.kind == "check-static":
                out.append(f"[uwsgi-static] added check for {r.given}")
            else:
                out.append(f"[uwsgi-static] added mapping for {r.mount.decode('latin-1')} => {r.given}")
        return out

    def resolve(self, announce: bool = False) -> None:
        """Real paths of the roots (after --chdir); a missing one is retried at request time."""
        for r in self.roots:
            if not r.resolve() and announce:
                log(f"[uwsgi-static] {r!r}: {r.given} does not exist (yet): skipped until it does")

    # ---- per request --------------------------------------------------------------------------
    def find(self, path: bytes, v: dict):
        skip = self.skip
        if skip and path.endswith(skip):
            return None
        for root in self.roots:
            mount = root.mount
            if not path.startswith(mount):
                continue
            found = self._try(root, path if root.whole else path[len(mount):], v)
            if found is not None:
                return found
        if self.docroot:
            droot = self._docroot(v.get(b"DOCUMENT_ROOT"))
            if droot is not None:
                return self._try(droot, path, v)
        return None

    def _docroot(self, d):
        if not d:
            return None
        cache = self._docroots
        root = cache.get(d)
        if root is None:
            root = Root("check-static-docroot", b"", os.fsdecode(d), True)
            if not root.resolve():
                return None
            if len(cache) > 64:
                cache.clear()
            cache[d] = root
        return root

    def _try(self, root: Root, rel: bytes, v: dict):
        base = root.real
        if base is None:
            if not root.resolve():
                return None
            base = root.real
        if root.is_file:
            fs = base
        else:
            fs = base + b"/" + rel
            if b".." in rel and _climbs(rel):
                target = os.path.normpath(fs)
                if not any(_under(target, s) for s in self.safe):
                    return self._refuse(target, root, v)
        key = fs
        paths = self.paths
        if paths is not None:
            found = self._cached(paths, key, root)
            if found is not None:
                return found
        try:
            fd = os.open(fs, O_FLAGS)
        except (OSError, ValueError):     # ValueError: a NUL byte in the path
            return None
        try:
            st = os.fstat(fd)
            if _stat.S_ISDIR(st.st_mode):
                dfd, fd = fd, -1
                fd, st, fs = self._index(dfd, fs)     # closes dfd
                if fd < 0:
                    return None
            elif not _stat.S_ISREG(st.st_mode):
                os.close(fd)
                return None
            real = self._verified(fd, st, fs, base)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise
        if real.__class__ is tuple:        # (its real path,): outside
            os.close(fd)
            return self._refuse(real[0], root, v)
        skip = self.skip
        if skip and real.endswith(skip):
            os.close(fd)
            return None
        if paths is not None:
            paths.put(key, real)     # a directory's key: the real path of its index file
        return Found(fd, st, real, root)

    def _cached(self, paths, fs: bytes, root: Root):
        """The file --static-cache-paths remembers for fs, opened by its real path without
        following any symlink (pathcache.py); None (the item dropped) when it is gone or no
        longer that kind of file: the caller resolves fs again."""
        real = paths.get(fs)
        if real is None:
            return None
        # the prefix check runs on a hit too, as uWSGI's (the item may have been written by an app)
        if _under(real, root.real) or any(_under(real, s) for s in self.safe):
            try:
                fd = open_no_symlinks(real)
            except (OSError, ValueError):
                fd = -1
            if fd >= 0:
                try:
                    st = os.fstat(fd)
                except OSError:
                    st = None
                if st is not None and _stat.S_ISREG(st.st_mode) and not (self.skip and real.endswith(self.skip)):
                    paths.hits += 1
                    return Found(fd, st, real, root)
                os.close(fd)
        paths.drop(fs)
        return None

    def _index(self, dfd: int, fs: bytes):
        """The first --static-index file of an open directory: (fd, stat, path), fd -1 if none."""
        try:
            for name in self.index:
                try:
                    fd = os.open(name, O_FLAGS, dir_fd=dfd)
                except (OSError, ValueError):
                    continue
                try:
                    st = os.fstat(fd)
                except OSError:
                    st = None
                if st is not None and _stat.S_ISREG(st.st_mode):
                    return fd, st, fs.rstrip(b"/") + b"/" + name
                os.close(fd)
        finally:
            os.close(dfd)
        return -1, None, fs

    def sibling(self, found: Found, suffix: bytes):
        """FILE.gz / FILE.br beside a found file, checked like it: a Found or None."""
        fs = found.real + suffix
        try:
            fd = os.open(fs, O_FLAGS)
        except (OSError, ValueError):
            return None
        try:
            st = os.fstat(fd)
            if not _stat.S_ISREG(st.st_mode):
                os.close(fd)
                return None
            real = self._verified(fd, st, fs, found.root.real)
        except BaseException:
            os.close(fd)
            raise
        if real.__class__ is tuple:
            os.close(fd)
            return None     # a variant pointing elsewhere: the plain file is served
        return Found(fd, st, real, found.root)

    def _verified(self, fd: int, st, fs: bytes, base: bytes):
        """The real path of the file open on fd when it is under base or a safe dir, else a
        1-tuple holding it. The kernel's answer is remembered per path with the file's identity
        (device, inode, ctime): the same file opened again by the same path is not asked again
        (a readlink of /proc costs more than the open); a file replaced, linked, renamed or
        reached through a new symlink is a new identity, checked again."""
        ident = (st.st_ino, st.st_dev, st.st_ctime_ns)
        known = self._known.get(fs)
        if known is not None and known[0] == ident:
            return known[1]
        real = real_path_of(fd, fs)
        if not (_under(real, base) or any(_under(real, s) for s in self.safe)):
            return (real,)
        known = self._known
        if len(known) >= KNOWN_MAX:
            known.clear()
        known[fs] = (ident, real)
        return real

    def _refuse(self, real: bytes, root: Root, v: dict):
        log(f"[uwsgi-fileserve] security error: {os.fsdecode(real)} is not under {os.fsdecode(root.real or b'?')} "
            f"or a safe path ({_desc(v)}, {root!r}): refused with 403")
        return REFUSED


def _desc(v: dict) -> str:
    method = v.get(b"REQUEST_METHOD", b"GET").decode("latin-1")
    uri = v.get(b"REQUEST_URI", b"")[:200].decode("latin-1")
    addr = v.get(b"REMOTE_ADDR", b"").decode("latin-1") or "?"
    return f"{method} {uri} from {addr}"
