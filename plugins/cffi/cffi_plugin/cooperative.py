"""--greenlet-cooperative: the standard library's blocking calls made cooperative for the app,
as nginx's Python module does, under --async N --greenlet (greenlet_cores.py).

What it touches, in each worker only (install() runs from CffiPlugin.post_fork, after fork: the
master, mules, spoolers and any process without the option keep the standard library as is):
  - time.sleep
  - socket.socket (the module attribute: CooperativeSocket, a subclass; isinstance checks
    against socket.socket still accept sockets made before, and ssl.SSLSocket)
  - socket.getaddrinfo, socket.gethostbyname
  - select.select
  - ssl.SSLContext.sslsocket_class (cooperative_ssl.py, installed beside: TLS over it)
`ssl` is imported first, so that ssl.SSLSocket keeps the original socket class as its base.

Called from a request's greenlet, a call that would block waits on the worker's loop instead
(uwsgid.plugins.api: only the calling core suspends, the other cores run). Anywhere else (the
loop itself, another thread, a signal handler, between requests) the original runs. A socket
stays a plain socket until its first operation inside a request greenlet; from then on its
file descriptor is non-blocking and its timeout is kept here (operations outside a request
greenlet then wait with poll, with the same timeout semantics).

Not cooperative: select.poll/epoll/selectors, os.read/os.write on raw fds, C extensions doing
their own I/O (psycopg2, mysqlclient), and threading locks: never hold a lock across a
cooperative call (another core of the same thread taking it would wait forever).
"""

from __future__ import annotations

import errno
import math
import os
import select
import socket
import ssl  # noqa: F401  (before the patch: ssl.SSLSocket must derive from the original socket)
import time
from time import monotonic

from greenlet import getcurrent

from uwsgid.plugins import api, resolver

_orig_sleep = time.sleep
_orig_socket = socket.socket
_orig_getaddrinfo = socket.getaddrinfo
_orig_gethostbyname = socket.gethostbyname
_orig_select = select.select
_poll = select.poll

_gettimeout = _orig_socket.gettimeout
_settimeout = _orig_socket.settimeout
_NATIVE = object()      # a socket not used in a request greenlet yet: its own timeout applies
_WAIT_ERRNOS = (errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK)


def green() -> bool:
    """Is the caller a request's greenlet (not the loop, another thread, a Lua core)?"""
    core = api.current_core()
    return (core is not None and getattr(core, "to_loop", None) is not None
            and getcurrent().parent is not None)


# ---- waiting on one fd ---------------------------------------------------------------------

def wait_fd(fd: int, writing: bool, deadline: float | None, cooperative: bool) -> None:
    """Until fd is ready: on the loop (cooperative) or in poll. TimeoutError past deadline."""
    if deadline is not None:
        left = deadline - monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
    else:
        left = None
    if cooperative:
        if left is None:
            (api.wait_fd_write if writing else api.wait_fd_read)(fd)
            if api.is_timed_out():      # the loop refused the fd (closed meanwhile)
                raise OSError(errno.EBADF, os.strerror(errno.EBADF))
            return
        if not (api.wait_writable if writing else api.wait_readable)(fd, left):
            raise TimeoutError("timed out")
        return
    p = _poll()
    p.register(fd, select.POLLOUT if writing else select.POLLIN)
    if not p.poll(None if left is None else math.ceil(left * 1000)):
        raise TimeoutError("timed out")


def _deadline(timeout):
    return None if timeout is None else monotonic() + timeout


# ---- sockets -------------------------------------------------------------------------------

class _AnySocket(type):
    """isinstance(x, socket.socket) keeps answering True for sockets made before the patch."""

    def __instancecheck__(cls, obj):
        return isinstance(obj, _orig_socket)

    def __subclasscheck__(cls, sub):
        return issubclass(sub, _orig_socket)


class Cooperative:
    """The timeout bookkeeping and waits shared by CooperativeSocket and cooperative_ssl's
    CooperativeSSLSocket. `_co`: _NATIVE, or the application's timeout (None, 0.0 or seconds)
    once the fd is non-blocking."""

    __slots__ = ()

    def _mode(self):
        """(timeout, in a request greenlet): converts the socket on its first use in one."""
        t = self._co
        cooperative = green()
        if t is _NATIVE and cooperative:
            t = self._co = _gettimeout(self)
            if t != 0.0:
                _settimeout(self, 0.0)
        return t, cooperative

    # ---- timeouts as the application sees them ----
    def settimeout(self, value):
        if self._co is _NATIVE:
            return _settimeout(self, value)
        _settimeout(self, value)        # validated and normalized as the original does
        self._co = _gettimeout(self)
        _settimeout(self, 0.0)

    def gettimeout(self):
        t = self._co
        return _gettimeout(self) if t is _NATIVE else t

    @property
    def timeout(self):
        return self.gettimeout()

    def setblocking(self, flag):
        self.settimeout(None if flag else 0.0)

    def getblocking(self):
        return self.gettimeout() != 0.0

    # ---- operations ----
    def _io(self, fn, writing, args):
        t, cooperative = self._mode()
        if t is _NATIVE or t == 0.0:
            return fn(self, *args)
        deadline = _deadline(t)
        while True:
            try:
                return fn(self, *args)
            except BlockingIOError:
                pass
            wait_fd(self.fileno(), writing, deadline, cooperative)

    def _accept(self):
        # socket.socket.accept() wraps the fd in socket.socket: a CooperativeSocket
        return self._io(_orig_socket._accept, False, ())

    def _connect(self, address, timeout, cooperative) -> int:
        """connect_ex's errno, waiting for the connection; TimeoutError past the timeout."""
        deadline = _deadline(timeout)
        if cooperative:
            address = self._resolved(address)
        err = _orig_socket.connect_ex(self, address)
        if err in (0, errno.EISCONN):
            return 0
        if err not in _WAIT_ERRNOS:
            return err
        wait_fd(self.fileno(), True, deadline, cooperative)
        return self.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)

    def _resolved(self, address):
        """(host, port, ...) with a host name: resolved here, cooperatively (the original
        connect would resolve it inside the call, holding the worker)."""
        if self.family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
            return address
        host = address[0]
        if not isinstance(host, str) or not host or host == "<broadcast>":
            return address
        sockaddr = getaddrinfo(host, address[1], self.family, self.type, self.proto)[0][4]
        if self.family == socket.AF_INET6 and len(address) > 2:
            return (sockaddr[0], sockaddr[1]) + tuple(address[2:])
        return sockaddr


class CooperativeSocket(Cooperative, _orig_socket, metaclass=_AnySocket):
    __slots__ = ("_co",)

    def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
        _orig_socket.__init__(self, family, type, proto, fileno)
        self._co = _NATIVE

    def recv(self, *args):
        return self._io(_orig_socket.recv, False, args)

    def recv_into(self, *args):
        return self._io(_orig_socket.recv_into, False, args)

    def recvfrom(self, *args):
        return self._io(_orig_socket.recvfrom, False, args)

    def recvfrom_into(self, *args):
        return self._io(_orig_socket.recvfrom_into, False, args)

    def recvmsg(self, *args):
        return self._io(_orig_socket.recvmsg, False, args)

    def recvmsg_into(self, *args):
        return self._io(_orig_socket.recvmsg_into, False, args)

    def send(self, *args):
        return self._io(_orig_socket.send, True, args)

    def sendto(self, *args):
        return self._io(_orig_socket.sendto, True, args)

    def sendmsg(self, *args):
        return self._io(_orig_socket.sendmsg, True, args)

    def sendall(self, data, flags=0):
        t, cooperative = self._mode()
        if t is _NATIVE or t == 0.0:
            return _orig_socket.sendall(self, data, flags)
        deadline = _deadline(t)     # for the whole call, as the original's
        with memoryview(data) as view, view.cast("B") as buf:
            off, n = 0, len(buf)
            while off < n:
                try:
                    off += _orig_socket.send(self, buf[off:], flags)
                    continue
                except BlockingIOError:
                    pass
                wait_fd(self.fileno(), True, deadline, cooperative)

    def _sendfile_use_sendfile(self, file, offset=0, count=None):
        if self._co is not _NATIVE or green():
            # the original waits in a selector: send() waits cooperatively
            raise socket._GiveupOnSendfile("cooperative socket")
        return _orig_socket._sendfile_use_sendfile(self, file, offset, count)

    def connect(self, address):
        t, cooperative = self._mode()
        if t is _NATIVE or t == 0.0:
            return _orig_socket.connect(self, address)
        err = self._connect(address, t, cooperative)
        if err:
            raise OSError(err, os.strerror(err))

    def connect_ex(self, address):
        t, cooperative = self._mode()
        if t is _NATIVE or t == 0.0:
            return _orig_socket.connect_ex(self, address)
        try:
            return self._connect(address, t, cooperative)
        except TimeoutError:
            return errno.EWOULDBLOCK        # what the original returns on a timeout


# ---- name resolution: in a thread, the greenlet waiting on an eventfd ------------------------

def _in_thread(fn, *args):
    waits = resolver.in_thread(fn, *args)
    try:
        while True:
            wait_fd(next(waits), False, None, True)
    except StopIteration as done:
        return done.value
    finally:
        waits.close()


def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
    if not green() or host is None or flags & socket.AI_NUMERICHOST:
        return _orig_getaddrinfo(host, port, family, type, proto, flags)
    try:    # a numeric address needs no lookup
        return _orig_getaddrinfo(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)
    except socket.gaierror:
        pass
    return _in_thread(_orig_getaddrinfo, host, port, family, type, proto, flags)


def gethostbyname(hostname):
    if not green():
        return _orig_gethostbyname(hostname)
    return _in_thread(_orig_gethostbyname, hostname)


# ---- time.sleep and select.select ------------------------------------------------------------

def sleep(seconds):
    if not green():
        return _orig_sleep(seconds)
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    if seconds == 0:
        api.suspend()           # a turn for the other cores
    else:
        api.async_sleep(seconds)


def _fd_of(obj) -> int:
    return obj if isinstance(obj, int) else obj.fileno()


def select_(rlist, wlist, xlist, timeout=None):
    if not green() or timeout == 0:
        return _orig_select(rlist, wlist, xlist, timeout)
    if timeout is not None and timeout < 0:
        raise ValueError("timeout must be non-negative")
    ready = _orig_select(rlist, wlist, xlist, 0)
    if ready[0] or ready[1] or ready[2]:
        return ready
    deadline = _deadline(timeout)
    # one fd for the loop to wait on: an epoll set holding them all (readable when one is ready)
    ep = select.epoll()
    try:
        events: dict[int, int] = {}
        for objs, ev in ((rlist, select.EPOLLIN), (wlist, select.EPOLLOUT), (xlist, select.EPOLLPRI)):
            for obj in objs:
                fd = _fd_of(obj)
                events[fd] = events.get(fd, 0) | ev
        for fd, ev in events.items():
            ep.register(fd, ev)
        while True:
            try:
                wait_fd(ep.fileno(), False, deadline, True)
            except TimeoutError:
                return [], [], []
            ready = _orig_select(rlist, wlist, xlist, 0)
            if ready[0] or ready[1] or ready[2]:
                return ready
    finally:
        ep.close()


# ---- install ---------------------------------------------------------------------------------

_installed = False


def install() -> None:
    """Patch the standard library in this process (a worker, after fork); once."""
    global _installed
    if _installed:
        return
    _installed = True
    time.sleep = sleep
    socket.socket = CooperativeSocket
    socket.getaddrinfo = getaddrinfo
    socket.gethostbyname = gethostbyname
    select.select = select_
