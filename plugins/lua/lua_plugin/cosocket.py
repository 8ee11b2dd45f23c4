"""Cosockets for Lua, the Python half: uwsgi.tcp() (cosocket.lua) drives these operations.

Under LuaJIT, cosocket_ffi.lua does the I/O, the buffer and the pool itself (libc through the
FFI: no crossing per call) and uses only open() (a new connection, resolved and connected here,
its fd handed over to Lua), release() (a handed-over fd unregistered and closed), the waits
(api's), core() (outside a request's Lua only) and later() (_Later: the turn-end flush of the
sends it holds under --async). Other engines use every operation below.

OpenResty's ngx.socket.tcp() shape with LuaSocket's names: connect, send, receive ("*l", "*a",
a byte count), settimeout(s), close, setkeepalive (a pool), getreusedtimes; errors as
`nil, err[, partial]`. Each operation is a generator over a non-blocking socket that yields
(fd, writing) where it would block. cosocket.lua calls an operation with `coop`:
  - true (the body's coroutine under --async): a would-block returns (False, fd, writing,
    seconds left or 0) and keeps the generator; Lua arms uwsgi.wait_fd_read/write, yields (only
    this core suspends), and calls resume(id, coop) to go on;
  - false (elsewhere, --threads, no --async): the generator is run to its end here, waiting in
    poll (only this thread blocks).
A timeout (60 s by default, as OpenResty's lua_socket_*_timeout) covers one operation.

Sockets are numbered per lua_State (Lua holds the number: no Python object is pushed per
request, lupa #294). A socket left open by a request is closed when its core next creates one
(OpenResty closes them at the request's end). Kept-alive connections wait in one pool per
thread (shared by the thread's async cores; OpenResty's is per worker process), keyed by
"host:port" or "unix:PATH", each key holding at most `size` idle connections (the least recently
used one is closed to make room), each for at most `timeout` ms (0 = no limit).
"""

from __future__ import annotations

import _socket
import errno
import os
import select
import threading
import time
from collections import deque
from time import monotonic

from uwsgid.plugins import api, resolver
from uwsgid.util.log import log

DEFAULT_TIMEOUT = 60.0          # seconds: OpenResty's lua_socket_{connect,send,read}_timeout
DEFAULT_KEEPALIVE = 60.0        # seconds: lua_socket_keepalive_timeout
DEFAULT_POOL_SIZE = 30          # lua_socket_pool_size
RECV_SIZE = 65536
LINE, ALL, COUNT = 0, 1, 2

_WAIT_ERRNOS = (errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK)
_STREAM = _socket.SOCK_STREAM | _socket.SOCK_NONBLOCK | _socket.SOCK_CLOEXEC


def _err(e: BaseException) -> bytes:
    """A LuaSocket-style message: "connection refused", "timeout"..."""
    if isinstance(e, OSError) and e.errno is not None:
        return os.strerror(e.errno).lower().encode()
    return str(e).encode() or type(e).__name__.encode()


class _Timeout(Exception):
    pass


class _Conn:
    __slots__ = ("sock", "key", "buf", "reused", "op", "deadline", "timeouts", "owner", "loop")

    def __init__(self, owner):
        self.sock = None
        self.loop = None            # the loop that keeps sock's fd registered (see _close)
        self.key = None
        self.buf = bytearray()
        self.reused = 0
        self.op = None              # the operation waiting to be resumed (a generator)
        self.deadline = None
        self.timeouts = [DEFAULT_TIMEOUT, DEFAULT_TIMEOUT, DEFAULT_TIMEOUT]   # connect, send, read
        self.owner = owner          # (core id, the core's request count) of the creating request

    def expired(self) -> bool:
        return self.deadline is not None and monotonic() >= self.deadline

    def left(self) -> float:
        """Seconds left for the operation (0 = no limit, as uwsgi.wait_fd_* read it)."""
        if self.deadline is None:
            return 0
        return max(0.001, self.deadline - monotonic())

    def drop(self) -> None:
        s = self.sock
        self.sock = None
        self.op = None
        self.buf = bytearray()
        if s is not None:
            _close(s, self.loop)
        self.loop = None


def _close(sock, loop) -> None:
    """Close a socket whose fd a core's loop may keep registered (api.keep_fd): forgotten first,
    so that a new fd with its number is not taken for registered."""
    if loop is not None:
        fd = sock.fileno()
        if fd >= 0:
            loop.forget(fd)
    sock.close()


# ---- the keepalive pool: per thread --------------------------------------------------------------

_pools = threading.local()


def _pool() -> dict:
    p = getattr(_pools, "pool", None)
    if p is None:
        p = _pools.pool = {}
    return p


def _alive(sock) -> bool:
    """An idle connection is fit for reuse: the peer has not closed it nor sent anything."""
    try:
        return api.recv_nb(sock, 1, _socket.MSG_PEEK) is None     # nothing to read: the good answer
    except OSError:
        return False


def _checkout(key: str):
    entries = _pool().get(key)
    if not entries:
        return None
    now = monotonic()
    while entries[1]:
        sock, expires, reused, loop = entries[1].pop()        # the most recently used
        if (expires is None or now < expires) and _alive(sock):
            return sock, reused, loop
        _close(sock, loop)
    return None


def _checkin(key: str, sock, timeout: float, size: int, reused: int, loop) -> None:
    pool = _pool()
    entries = pool.get(key)
    if entries is None:
        entries = pool[key] = [size, deque()]      # the size is fixed when the pool is made
    idle = entries[1]
    while len(idle) >= entries[0]:
        old = idle.popleft()                        # the least recently used makes room
        _close(old[0], old[3])
    idle.append((sock, monotonic() + timeout if timeout > 0 else None, reused, loop))


# ---- name resolution (cooperative: a thread, the core waiting on an eventfd) -------------------

def _resolve(host: str, port: int):
    """A generator: the sockaddr infos of host:port (a name looked up in a thread)."""
    try:
        return _socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM, 0, _socket.AI_NUMERICHOST)
    except _socket.gaierror:
        pass
    waits = resolver.in_thread(_socket.getaddrinfo, host, port, 0, _socket.SOCK_STREAM)
    try:
        while True:
            yield next(waits), False
    except StopIteration as done:
        return done.value
    finally:
        waits.close()


# ---- the operations ---------------------------------------------------------------------------

def _connect(conn: _Conn, host: str, port, pooled: bool = True):
    if host.startswith("unix:"):
        key = host
        infos = [(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, "", host[5:])]
    else:
        if port is None:
            return None, b"missing the port number"
        port = int(port)
        key = f"{host}:{port}"
        infos = None
    idle = _checkout(key) if pooled else None
    if idle is not None:
        conn.sock, reused, conn.loop = idle
        conn.key, conn.reused = key, reused + 1
        return 1, None
    if infos is None:
        try:
            infos = yield from _resolve(host.strip("[]"), port)
        except (_socket.gaierror, UnicodeError) as e:
            return None, f"{host} could not be resolved ({getattr(e, 'strerror', None) or e})".encode()
        if conn.expired():
            return None, b"timeout"
    family, _, proto, _, addr = infos[0]
    sock = _socket.socket(family, _STREAM, proto)
    try:
        if family != _socket.AF_UNIX:
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        err = sock.connect_ex(addr)
        if err in _WAIT_ERRNOS:
            while True:
                yield sock.fileno(), True
                p = select.poll()
                p.register(sock.fileno(), select.POLLOUT)
                if p.poll(0):
                    break
                if conn.expired():
                    raise _Timeout
            err = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))
    except _Timeout:
        sock.close()
        return None, b"timeout"
    except OSError as e:
        sock.close()
        return None, _err(e)
    conn.sock, conn.key, conn.reused = sock, key, 0
    # its waits (one or two per request) leave it registered with the core's epoll, and so
    # does the pool between requests (one pool per thread: the same loop)
    conn.loop = api.keep_fd(sock.fileno())
    return 1, None


def _send(conn: _Conn, data: bytes, off: int = 0):
    sock = conn.sock
    view = memoryview(data)
    n = len(view)
    while off < n:
        try:
            off += sock.send(view[off:])
            continue
        except BlockingIOError:
            pass
        except OSError as e:
            conn.drop()
            return None, _err(e)
        if conn.expired():
            return None, b"timeout"
        yield sock.fileno(), True
        if conn.expired():
            return None, b"timeout"
    return n, None


def _take(conn: _Conn, kind: int, n: int):
    """The data the pattern asks for, if the buffer holds it (consumed), else None."""
    buf = conn.buf
    if kind == LINE:
        i = buf.find(b"\n")
        if i < 0:
            return None
        line = bytes(buf[:i]).replace(b"\r", b"")   # every CR is ignored, as LuaSocket's *l
        del buf[:i + 1]
        return line
    if kind == COUNT and len(buf) >= n:
        data = bytes(buf[:n])
        del buf[:n]
        return data
    return None


def _receive(conn: _Conn, kind: int, n: int):
    sock = conn.sock
    while True:
        data = _take(conn, kind, n)
        if data is not None:
            return data, None
        try:
            chunk = api.recv_nb(sock, RECV_SIZE)
            if chunk is None:
                if conn.expired():
                    partial = bytes(conn.buf)
                    conn.buf = bytearray()
                    return None, b"timeout", partial
                yield sock.fileno(), False
                continue
        except OSError as e:
            partial = bytes(conn.buf)
            conn.drop()
            return None, _err(e), partial
        if not chunk:
            partial = bytes(conn.buf)
            conn.drop()
            if kind == ALL:
                return partial, None
            return None, b"closed", partial
        conn.buf += chunk


# ---- what cosocket.lua calls ------------------------------------------------------------------

def _owner():
    core = api.current_core()
    return (core.id, core.requests) if core is not None else (-1, 0)


class Cosockets:
    """The sockets of one lua_State, by number."""

    def __init__(self):
        self.conns: dict[int, _Conn] = {}
        self.by_core: dict[int, list[int]] = {}     # core id -> the numbers it made (some closed since)
        self.next_id = 0

    def new(self, core=None, serial=None) -> int:
        """A socket number. `core`, `serial`: the calling core and its request (runtime.lua's
        count of the requests begun on it: core.requests lags behind on the native lane)."""
        owner = _owner() if core is None else (int(core), serial)
        conns = self.conns
        ids = self.by_core.get(owner[0])
        if ids is None:
            ids = self.by_core[owner[0]] = []
        elif ids:
            live = []
            for i in ids:
                c = conns.get(i)
                if c is None:
                    continue                # closed, or back in the pool
                if c.owner != owner:        # left open by an earlier request of this core
                    del conns[i]
                    c.drop()
                else:
                    live.append(i)
            ids[:] = live
        self.next_id += 1
        conns[self.next_id] = _Conn(owner)
        ids.append(self.next_id)
        return self.next_id

    def _run(self, conn: _Conn, gen, coop: bool):
        """Run an operation until it ends (its result) or, cooperative, would block."""
        try:
            while True:
                fd, writing = next(gen)
                if coop:
                    conn.op = gen
                    return False, fd, writing, conn.left()
                p = select.poll()
                p.register(fd, select.POLLOUT if writing else select.POLLIN)
                left = conn.left()
                p.poll(int(left * 1000) + 1 if left else None)
        except StopIteration as stop:
            conn.op = None
            conn.deadline = None
            return stop.value

    def _start(self, conn: _Conn, gen, which: int, coop: bool):
        t = conn.timeouts[which]
        conn.deadline = monotonic() + t if t else None
        return self._run(conn, gen, coop)

    def resume(self, cid: int, coop: bool):
        conn = self.conns.get(cid)
        if conn is None or conn.op is None:
            return None, b"closed"
        return self._run(conn, conn.op, coop)

    def connect(self, cid: int, host: bytes, port, coop: bool):
        conn = self.conns.get(cid)
        if conn is None:
            return None, b"closed"
        conn.drop()                     # connecting again closes the current connection
        return self._start(conn, _connect(conn, host.decode("utf-8", "replace"), port), 0, coop)

    def send(self, cid: int, data: bytes, coop: bool):
        conn = self.conns.get(cid)
        if conn is None or conn.sock is None:
            return None, b"closed"
        try:
            n = conn.sock.send(data)        # most sends go out whole at once: no generator then
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as e:
            conn.drop()
            return None, _err(e)
        if n == len(data):
            return n, None
        return self._start(conn, _send(conn, data, n), 1, coop)

    def receive(self, cid: int, kind: int, n: int, coop: bool):
        conn = self.conns.get(cid)
        if conn is None or conn.sock is None:
            return None, b"closed"
        kind, n = int(kind), int(n)
        if conn.buf:
            data = _take(conn, kind, n)     # already read (the rest of the reply): no generator
            if data is not None:
                return data, None
        return self._start(conn, _receive(conn, kind, n), 2, coop)

    def settimeouts(self, cid: int, connect_ms, send_ms, read_ms) -> None:
        conn = self.conns.get(cid)
        if conn is not None:
            conn.timeouts = [ms / 1000.0 if ms and ms > 0 else None for ms in (connect_ms, send_ms, read_ms)]

    def close(self, cid: int):
        conn = self.conns.pop(cid, None)
        if conn is None or conn.sock is None:
            return None, b"closed"
        conn.drop()
        return 1, None

    def setkeepalive(self, cid: int, timeout_ms, size):
        conn = self.conns.get(cid)
        if conn is None or conn.sock is None:
            return None, b"closed"
        if conn.buf or conn.op is not None:
            return None, b"connection in dubious state"
        self.conns.pop(cid)
        timeout = DEFAULT_KEEPALIVE if timeout_ms is None else max(0.0, float(timeout_ms)) / 1000.0
        size = DEFAULT_POOL_SIZE if size is None else max(1, int(size))
        _checkin(conn.key, conn.sock, timeout, size, conn.reused, conn.loop)
        conn.sock = None
        conn.loop = None
        return 1, None

    # ---- the LuaJIT back end's (cosocket_ffi.lua): new connections handed over as fds ----------
    def open(self, host: bytes, port, connect_s, coop: bool):
        """A new connection's fd, which Lua owns from then on (it gives it back to release());
        or (False, fd, writing, seconds left, id): wait, then resume(id)."""
        cid = self.new()
        conn = self.conns[cid]
        conn.timeouts[0] = float(connect_s) if connect_s and connect_s > 0 else None
        res = self._start(conn, self._handover(cid, conn, host.decode("utf-8", "replace"), port), 0, coop)
        if res[0] is False:
            return (*res, cid)
        return res

    def _handover(self, cid: int, conn: _Conn, host: str, port):
        res = yield from _connect(conn, host, port, pooled=False)
        self.conns.pop(cid, None)
        if res[0] != 1:
            return res
        sock, loop = conn.sock, conn.loop
        conn.sock = conn.loop = None
        fd = sock.detach()
        _handed().setdefault(fd, loop)
        return fd, None

    def getreusedtimes(self, cid: int):
        conn = self.conns.get(cid)
        if conn is None or conn.sock is None:
            return None, b"closed"
        return conn.reused, None


def _handed() -> dict:
    """This thread's fds handed over to Lua -> the loop that keeps each registered (or None)."""
    h = getattr(_pools, "handed", None)
    if h is None:
        h = _pools.handed = {}
    return h


def release(fd: int) -> None:
    """A handed-over fd back from Lua: out of its loop, closed. Only fds handed over and not
    released yet are closed (a number given twice is not some other file's)."""
    handed = _handed()
    if fd not in handed:
        return
    loop = handed.pop(fd)
    if loop is not None:
        loop.forget(fd)
    try:
        os.close(fd)
    except OSError:
        pass


def core_id() -> int:
    """The calling core's id (its slot in the lua_State), -1 outside a request."""
    core = api.current_core()
    return core.id if core is not None else -1


CONSTS = {
    b"EAGAIN": errno.EAGAIN, b"EWOULDBLOCK": errno.EWOULDBLOCK, b"EINTR": errno.EINTR,
    b"MSG_PEEK": _socket.MSG_PEEK, b"MSG_DONTWAIT": _socket.MSG_DONTWAIT,
    b"MSG_NOSIGNAL": _socket.MSG_NOSIGNAL, b"POLLIN": select.POLLIN, b"POLLOUT": select.POLLOUT,
    b"CLOCK_MONOTONIC": time.CLOCK_MONOTONIC,
}


class _Later:
    """ops.later(delay) for cosocket_ffi.lua: the state's M.turn_end (its flush of the sends it
    held meanwhile) at the end of the calling core's loop turn, once the turn's events are
    handled, or `delay` seconds from now; False outside a core (nothing scheduled). Only the
    state's own entry is called from Python: a Lua function handed over from inside a coroutine
    would run on that coroutine's stack."""

    __slots__ = ("state",)

    def __init__(self, state):
        self.state = state

    def __call__(self, delay=None) -> bool:
        core = api.current_core()
        loop = getattr(core, "loop", None)
        if loop is None:
            return False
        if delay:
            loop.call_later(delay, self.run)
        else:
            loop.ready.append(self.run)
        return True

    def run(self) -> None:
        st = self.state
        try:
            st.turn_end()
        except st.lupa.LuaError as exc:     # (the memory cap: what was not sent yet is lost)
            log(f"[uwsgi-lua] cosockets: sending the held data failed: {exc}")
            if isinstance(exc, st.lupa.LuaMemoryError):
                st.recover_memory()


def yieldable() -> bool:
    """Does the calling core share its loop with other cores (--async: waits may yield)?"""
    core = api.current_core()
    loop = getattr(core, "thread_loop", None)
    return loop is not None and len(loop.cores) > 1


def lua_side(state):
    """For uwsgi_table.lua: () -> the Lua code of cosocket.lua and the operations it drives."""
    def cosocket():
        socks = Cosockets()
        rt = state.rt
        ops = rt.table_from({
            b"new": socks.new, b"connect": socks.connect, b"send": socks.send,
            b"receive": socks.receive, b"resume": socks.resume, b"settimeouts": socks.settimeouts,
            b"close": socks.close, b"setkeepalive": socks.setkeepalive, b"getreusedtimes": socks.getreusedtimes,
            b"yieldable": yieldable, b"open": socks.open, b"release": release, b"core": core_id,
            b"wait_read": api.wait_fd_read, b"wait_write": api.wait_fd_write,     # cosocket.lua's arm()
            b"consts": rt.table_from(CONSTS),
        })
        ops[b"later"] = _Later(state)
        ops[b"ffi_code"] = _lua_code("cosocket_ffi.lua")      # LuaJIT's: other engines keep the ops
        return _lua_code("cosocket.lua"), ops
    return cosocket


_code: dict = {}


def _lua_code(name: str) -> bytes:
    code = _code.get(name)
    if code is None:
        # the package's loader (a directory or the build's baked loader), as state.py reads
        # the plugin's other Lua files
        import sys
        pkg = sys.modules[__package__]
        code = _code[name] = pkg.__spec__.loader.get_data(os.path.join(os.path.dirname(pkg.__file__), name))
    return code
