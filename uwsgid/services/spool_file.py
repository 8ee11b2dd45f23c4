"""Spool files in uWSGI's format (core/spooler.c), so that a spool directory is shared with real
uWSGI either way.

A task is one file `uwsgi_spoolfile_on_HOST_PID_COUNTER_RAND_SEC_USEC` holding a uwsgi packet:
a 4-byte header (modifier1 17, the vars size as little-endian u16, modifier2 0), the task's args
as a uwsgi vars block (u16 key size, key, u16 value size, value; at most 64 KB in all), then the
optional body up to the end of the file. Keys with a meaning:
  spooler   the spool dir the task goes to (the first --spooler by default)
  priority  a number: the task goes to that subdirectory of the spool dir (run, lowest number
            first, only by a spooler started with --spooler-ordered)
  at        a Unix time: the file's mtime is set to it, and a spooler skips it until then

Writing: to a hidden temporary name in the target directory, then renamed, so a spooler (ours
or uWSGI's) never sees a half-written task. uWSGI itself writes in place under an fcntl lock;
readers here honour that lock too.

Running: a spooler takes a task with a non-blocking fcntl write lock on the whole file (the lock
uWSGI's spoolers take, so ours and theirs share a directory without running a task twice) and
holds it while the task runs. The lock dies with the process: a spooler killed mid-task leaves
the file, unlocked, for the next scan.
"""

from __future__ import annotations

import _thread
import fcntl
import os
import struct
import time

PREFIX = "uwsgi_spoolfile_on_"
MODIFIER1 = 17
ARGS_MAX = 0xFFFF

_counter = 0
_counter_lock = _thread.allocate_lock()   # threading's Lock without importing threading
_hostname: str | None = None


class SpoolError(ValueError):
    """A task that cannot be written (the message names what is wrong)."""


# ---- the vars block ---------------------------------------------------------------------------

def pack_vars(items) -> bytes:
    """(key, value) byte pairs -> a uwsgi vars block."""
    out = bytearray()
    for key, value in items:
        if len(key) > 0xFFFF or len(value) > 0xFFFF:
            raise SpoolError(f"spool arg {key[:40]!r}: keys and values are at most 65535 bytes")
        out += struct.pack("<H", len(key)) + key + struct.pack("<H", len(value)) + value
    return bytes(out)


def parse_vars(buf: bytes) -> dict[bytes, bytes]:
    """A uwsgi vars block -> {key: value}; ValueError when it is truncated."""
    out: dict[bytes, bytes] = {}
    pos, end = 0, len(buf)
    while pos < end:
        if pos + 2 > end:
            raise ValueError("truncated key size")
        (klen,) = struct.unpack_from("<H", buf, pos)
        pos += 2
        key = buf[pos:pos + klen]
        pos += klen
        if pos + 2 > end:
            raise ValueError("truncated value size")
        (vlen,) = struct.unpack_from("<H", buf, pos)
        pos += 2
        if pos + vlen > end:
            raise ValueError("truncated value")
        out[bytes(key)] = bytes(buf[pos:pos + vlen])
        pos += vlen
    return out


def parse_at(value: bytes) -> int:
    """uWSGI's reading of `at`: the digits before any '.', 0 when there are none."""
    digits = value.split(b".", 1)[0].lstrip()
    n = 0
    while n < len(digits) and 48 <= digits[n] <= 57:
        n += 1
    return int(digits[:n]) if n else 0


# ---- writing ------------------------------------------------------------------------------------

def _next_counter() -> int:
    global _counter
    with _counter_lock:
        _counter += 1       # counted even when the write fails, as uWSGI's internal_counter
        return _counter


def _host() -> str:
    global _hostname
    if _hostname is None:
        _hostname = os.uname().nodename      # gethostname(), without importing socket
    return _hostname


def _rand() -> int:
    # rand()'s range; not the random module (heavy, and a worker would carry it)
    return int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF


def file_name() -> str:
    now = time.time()
    sec = int(now)
    usec = int((now - sec) * 1_000_000)
    return (f"{PREFIX}{_host()}_{os.getpid()}_{_next_counter()}_{_rand()}"
            f"_{sec}_{usec}")


def write(directory: str, args: bytes, body: bytes = b"", priority: bytes | None = None,
          at: int = 0) -> str:
    """Write one task into `directory` (its `priority` subdirectory when given); the file's
    absolute path. OSError when the directory refuses it."""
    if len(args) > ARGS_MAX:
        raise SpoolError("[uwsgi-spooler] args buffer is limited to 64k, use the 'body' for bigger values")
    target = directory
    if priority:
        target = os.path.join(directory, priority.decode())
        try:
            os.mkdir(target, 0o777)
        except FileExistsError:
            pass
    name = file_name()
    final = os.path.join(target, name)
    tmp = os.path.join(target, f".{name}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    try:
        data = struct.pack("<BHB", MODIFIER1, len(args), 0) + args + (body or b"")
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if at > 0:
            os.utime(fd, (at, at))
        os.close(fd)
        fd = -1
        os.rename(tmp, final)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return final


# ---- reading ----------------------------------------------------------------------------------

class Task:
    """A task taken by this process: its file stays locked until close()."""

    def __init__(self, name: str, path: str, fd: int, args: dict[bytes, bytes], body: bytes | None):
        self.name = name          # the file name (uWSGI hands plugins this, relative to the dir)
        self.path = path
        self.fd = fd
        self.args = args
        self.body = body

    def done(self) -> None:
        """The task succeeded: the file goes (before the lock is released)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)      # releases the lock
            self.fd = -1


class Corrupt(Exception):
    """A locked, complete-looking task file whose content cannot be read (uWSGI removes it)."""


def _locked_by_other(fd: int) -> bool:
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True


def take(directory: str, name: str, now: float | None = None) -> Task | None:
    """Lock and read the task `name` of `directory`: None when it is not a task to run now (not
    a regular file, an `at` in the future, locked by another spooler or a writer, being
    written, already gone). Raises Corrupt when its content is broken."""
    path = os.path.join(directory, name)
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not _is_reg(st.st_mode) or st.st_mtime > (time.time() if now is None else now):
        return None
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if _locked_by_other(fd):
            os.close(fd)
            return None
        # another spooler may have run and removed it between our open and our lock
        st = os.fstat(fd)
        if st.st_nlink == 0:
            os.close(fd)
            return None
        header = os.pread(fd, 4, 0)
        if len(header) < 4:
            os.close(fd)      # a file uWSGI is still writing (it locks after creating)
            return None
        size = struct.unpack_from("<H", header, 1)[0]
        data = os.pread(fd, st.st_size - 4, 4) if st.st_size > 4 else b""
        if len(data) < size:
            raise Corrupt(f"{len(data)} bytes of args instead of {size}")
        try:
            args = parse_vars(data[:size])
        except ValueError as exc:
            raise Corrupt(str(exc)) from None
        body = data[size:] or None
    except Corrupt:
        os.close(fd)
        raise
    except OSError:
        os.close(fd)
        return None
    return Task(name, path, fd, args, body)


def read(path: str) -> tuple[dict[bytes, bytes], bytes | None] | None:
    """The args and body of a task file (uwsgi.spooler_get_task), without taking it: None when it
    is missing, unreadable, broken or being run."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if _locked_by_other(fd):
            return None
        st = os.fstat(fd)
        header = os.pread(fd, 4, 0)
        if len(header) < 4:
            return None
        size = struct.unpack_from("<H", header, 1)[0]
        data = os.pread(fd, max(0, st.st_size - 4), 4)
        if len(data) < size:
            return None
        return parse_vars(data[:size]), (data[size:] or None)
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def _is_reg(mode: int) -> bool:
    return (mode & 0o170000) == 0o100000


def _is_dir(mode: int) -> bool:
    return (mode & 0o170000) == 0o040000


def version_key(name: str):
    """An approximation of glibc's versionsort (uWSGI's --spooler-ordered order): digit runs
    compare as numbers, so priority "2" comes before "10" and both before the task files."""
    import re  # here: the spooler's module is imported by every start-up, for its options
    key = []
    for i, part in enumerate(re.split(r"(\d+)", name)):
        if i % 2:
            key.append((0, int(part), part))
        elif part:
            key.append((1, 0, part))
    return key


def entries(directory: str, ordered: bool) -> list[str]:
    """The names a spooler looks at in `directory`: task files; with `ordered`, in version
    order, numeric subdirectories (priorities) too."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    if ordered:
        names = sorted((n for n in names if n.startswith(PREFIX) or n.isdigit()), key=version_key)
    else:
        names = [n for n in names if n.startswith(PREFIX)]
    return names


def is_priority_dir(directory: str, name: str) -> bool:
    try:
        return name.isdigit() and _is_dir(os.lstat(os.path.join(directory, name)).st_mode)
    except OSError:
        return False


def jobs(directory: str) -> list[str]:
    """The task files of `directory` (uwsgi.spooler_jobs(): its top level, as uWSGI)."""
    out = []
    for name in entries(directory, ordered=False):
        path = os.path.join(directory, name)
        try:
            if _is_reg(os.lstat(path).st_mode) and os.access(path, os.R_OK | os.W_OK):
                out.append(path)
        except OSError:
            continue
    return out


def has_tasks(directory: str) -> bool:
    try:
        return any(n.startswith(PREFIX) for n in os.listdir(directory))
    except OSError:
        return False
