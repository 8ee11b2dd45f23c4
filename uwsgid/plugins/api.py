"""The runtime-neutral server API behind both `uwsgi` modules (Lua's table and Python's module).

Plugins wrap these functions; they never reach into the worker loop directly.
The worker loop sets the running core with `set_current(core)` before it runs or
resumes a request on it (one thread-local store: threads each run their own loop).

Waits (async): async_sleep/wait_fd_read/wait_fd_write only *arm* a wait on the
current core; the app must then yield (Lua `coroutine.yield()`, Python generator
`yield b""`), and the core suspends until the wait fires or times out. Under a suspend
engine (--greenlet: the core's `to_loop` is set while its request runs in a green thread)
they also switch back to the loop inside the call, and return once the wait fired.
"""

from __future__ import annotations

import errno
import os
import signal
import threading
import time

from uwsgid.config.options import value as option_value
from uwsgid.net.flusher import watch as stream_watch  # noqa: F401  (see uwsgid/net/flusher.py)
from uwsgid.observe import stats
from uwsgid.util import binary, memory

try:
    # recv without an exception when nothing is there (core/wsframe.c): see recv_nb
    from _uwsgi import ffi as _ffi
    from _uwsgi import lib as _lib
    _c_recv = _lib.uwsgi_recv_nb
except (ImportError, AttributeError):   # plain python without the build
    _c_recv = None

_local = threading.local()
_buffers = threading.local()
_RECV = 65536
_EAGAIN = -errno.EAGAIN
_EINTR = -errno.EINTR

# Set by the server at start-up (uwsgid.main / worker) so that the API can answer.
server = None   # the running server object: .opts, .master_pid, .numproc, .plugins
worker = None   # this process's Worker (None in the master)


def set_current(core) -> None:
    _local.core = core


def use_local(store) -> None:
    """Keep the current core in `store` instead of a thread-local: a loop engine whose requests
    run in green threads of one thread (--gevent: a greenlet-local) gives each its own."""
    global _local
    _local = store


def current_core():
    """The core running the current request in this thread, or None outside a request."""
    return getattr(_local, "core", None)


def current_request():
    core = getattr(_local, "core", None)
    if core is None:
        return None
    req = core.request
    if req is None:
        take = getattr(core, "take_request", None)
        if take is not None:
            req = take()   # an app on the native lane asks for its request: made now
    return req


# ---- waits: the core reads core.wait after request() and after each yield ----------------

class Wait:
    __slots__ = ("fd", "events", "timeout")
    READ = 1
    WRITE = 2

    def __init__(self, fd: int = -1, events: int = 0, timeout: float | None = None):
        self.fd = fd
        self.events = events
        self.timeout = timeout


def _arm(wait: Wait) -> None:
    core = current_core()
    if core is None:
        raise RuntimeError("async wait called outside a request")
    core.wait = wait
    core.ready_fd = -1
    core.timed_out = False
    to_loop = getattr(core, "to_loop", None)
    if to_loop is not None:
        to_loop()       # a green thread: back when the wait fired (ready_fd / timed_out set)


def async_sleep(seconds: float) -> None:
    _arm(Wait(timeout=max(0.0, float(seconds))))


def wait_fd_read(fd: int, timeout: float = 0) -> None:
    _arm(Wait(int(fd), Wait.READ, float(timeout) or None))


def wait_fd_write(fd: int, timeout: float = 0) -> None:
    _arm(Wait(int(fd), Wait.WRITE, float(timeout) or None))


def suspend() -> None:
    """Arm nothing: the next yield gives the other cores one loop turn (in a green thread:
    that turn is taken now, inside the call)."""
    core = current_core()
    to_loop = getattr(core, "to_loop", None) if core is not None else None
    if to_loop is not None:
        core.wait = None
        to_loop()


_PARKED = Wait()    # no fd, no timeout: the core's _arm sets nothing, only resume() ends it


def park() -> None:
    """Arm a wait that only resume(core) ends: at the next yield the core suspends until another
    part of the worker (an ASGI app's send, on the asyncio loop) wakes it."""
    _arm(_PARKED)


def resume(core) -> None:
    """End the park() of `core` (from the core's own thread): its request steps at the next turn."""
    if core.wait is _PARKED:
        core.wait = None
        core.loop.ready.append(core._resume)


def _green_wait(fd: int, events: int, timeout: float) -> bool:
    # _arm's steps without its lookups: this runs once per message of a WebSocket or raw socket
    core = getattr(_local, "core", None)
    if core is None:
        raise RuntimeError("async wait called outside a request")
    core.wait = Wait(fd, events, timeout if timeout > 0.001 else 0.001)
    core.ready_fd = -1
    core.timed_out = False
    to_loop = getattr(core, "to_loop", None)
    if to_loop is not None:
        to_loop()
    return not core.timed_out


def wait_readable(fd: int, timeout: float) -> bool:
    """Wait (in a green thread) until fd is readable: True, or False after `timeout` seconds.
    What a blocking call of the server (a WebSocket's recv) does instead of poll there."""
    return _green_wait(int(fd), Wait.READ, float(timeout))


def wait_writable(fd: int, timeout: float) -> bool:
    """wait_readable's twin for writing."""
    return _green_wait(int(fd), Wait.WRITE, float(timeout))


def recv_nb(sock, n: int = _RECV, flags: int = 0):
    """Up to n bytes from a socket object if some are there, b"" at the end of the stream, None
    when nothing has arrived yet; raises OSError on an error. A read before a wait mostly finds
    nothing: here that costs no exception (a cosocket's receive, its pool's MSG_PEEK check)."""
    if _c_recv is None:
        try:
            return sock.recv(n, flags)
        except (BlockingIOError, InterruptedError):
            return None
    b = getattr(_buffers, "b", None)
    if b is None:
        b = _buffers.b = _ffi.new("char[]", _RECV)
    got = _c_recv(sock.fileno(), b, n if 0 < n <= _RECV else _RECV, flags)
    if got < 0:
        if got == _EAGAIN or got == _EINTR:
            return None
        raise OSError(-got, os.strerror(-got))
    return _ffi.buffer(b, got)[:]


def keep_fd(fd: int):
    """The current core's loop keeps fd registered between waits (see uwsgid.net.loop): for a
    socket the caller owns and waits on again and again. Returns the loop (None outside a core):
    loop.forget(fd) must come before the socket is closed."""
    core = current_core()
    loop = getattr(core, "loop", None)
    if loop is not None:
        loop.keep(fd)
    return loop


def green_core() -> bool:
    """Does the current request run in a green thread (waits switch inside the call)?"""
    core = current_core()
    return core is not None and getattr(core, "to_loop", None) is not None


def ready_fd() -> int:
    core = current_core()
    return core.ready_fd if core is not None else -1


def is_timed_out() -> bool:
    core = current_core()
    return bool(core is not None and core.timed_out)


# ---- identity ----------------------------------------------------------------------------

def worker_id() -> int:
    return worker.id if worker is not None else 0


def async_id() -> int:
    core = current_core()
    return core.id if core is not None else 0


def request_id() -> int:
    """Requests handled so far by the current core (uWSGI's request_id)."""
    core = current_core()
    return core.requests if core is not None else 0


def connection_fd() -> int:
    req = current_request()
    return req.fd if req is not None else -1


def micros() -> int:
    return time.time_ns() // 1000


def mypid() -> int:
    return os.getpid()


# ---- the instance: shared by both `uwsgi` modules -------------------------------------------

def master_pid() -> int:
    """The master's pid, 0 without a master (uWSGI's uwsgi.masterpid())."""
    if server is None or not server.has_master:
        return 0
    return int(server.master_pid)


def _signal_master(sig) -> bool:
    """To the master, or to this process when it runs alone."""
    try:
        os.kill(master_pid() or os.getpid(), sig)
    except OSError:
        return False
    return True


def reload() -> bool:
    """Graceful reload of the whole instance (SIGHUP to the master)."""
    return _signal_master(signal.SIGHUP)


def stop() -> bool:
    """Graceful stop of the whole instance (SIGTERM to the master)."""
    return _signal_master(signal.SIGTERM)


def memory_usage() -> tuple[int, int]:
    """(rss, vsz) of this process in bytes, as uWSGI's uwsgi.mem()."""
    return memory.rss_vsz()


def workers() -> list[dict]:
    """One dict per worker with the stats server's fields ([] before the scoreboard exists)."""
    if server is None or server.scoreboard is None:
        return []
    return stats.workers(server)


def set_proctitle(title: str) -> None:
    """Name this process in ps (inside the ./uwsgi executable; a no-op elsewhere)."""
    binary.set_proctitle(title)


# ---- custom worker loop (a plugin may replace the worker's default loop, e.g. with asyncio) ------

loop_hook = None


def set_loop(fn) -> None:
    """Make workers call fn(worker) -> exit code instead of their default loop. fn may use
    worker.listeners (non-blocking listening sockets) and worker.serve_connection(sock, addr,
    listener), which serves one accepted connection to completion in the calling thread."""
    global loop_hook
    loop_hook = fn


# ---- request log variables (--log-format %(name)) --------------------------------------------------

def set_logvar(name, value) -> None:
    req = current_request()
    if req is None:
        raise RuntimeError("set_logvar called outside a request")
    key = name.decode("latin-1") if isinstance(name, bytes) else str(name)
    req.logvars[key] = value if isinstance(value, bytes) else str(value).encode("utf-8", "backslashreplace")


def get_logvar(name):
    req = current_request()
    if req is None:
        return None
    key = name.decode("latin-1") if isinstance(name, bytes) else str(name)
    return req.logvars.get(key)


# ---- WebSockets (uwsgid/net/websocket.py) -------------------------------------------------------
# uWSGI's API: OSError ("IOError") whenever it cannot be done, so an app's receive loop ends there.

def websocket_handshake(key=None, origin=None, proto=None, headers=None, req=None):
    """uWSGI's handshake for the current request; an ASGI app's websocket.accept gives its
    request (it runs outside the core) and its extra `headers` (see net/wshandshake.handshake).
    Returns the session."""
    req = req or current_request()
    if req is None:
        raise OSError("unable to complete websocket handshake: not in a request")
    from uwsgid.net import wshandshake  # only an app that takes WebSockets loads it
    opts = server.opts if server is not None else None
    session = wshandshake.handshake(
        req, key, origin, proto,
        ping_freq=option_value(opts, "websocket_ping_freq", 30),
        pong_tolerance=option_value(opts, "websocket_pong_tolerance", 3),
        max_size=option_value(opts, "websocket_max_size", 1024) * 1024,
        send_timeout=option_value(opts, "socket_timeout", 4),
        headers=headers)
    if green_core() and req is current_request():
        # a green thread: recv/send wait on the loop (this core suspends), not in poll
        session.wait_readable = wait_readable
        session.wait_writable = wait_writable
        core = current_core()
        if session.tls is None and getattr(core, "spawn", None) is None:
            # greenlet cores (not gevent's hub): frames go out at the end of the loop turn
            from uwsgid.net.wsbatch import batch_of
            session.batch = batch_of(core.loop)
    return session


def _session(what: str):
    core = getattr(_local, "core", None)     # current_request(), inline: once or twice per message
    req = core.request if core is not None else None
    session = req.websocket if req is not None else None
    if session is None:
        raise OSError(f"unable to {what}: no websocket (call uwsgi.websocket_handshake() first)")
    return session


def _payload(msg) -> bytes:
    if isinstance(msg, str):
        return msg.encode("utf-8")
    return bytes(msg)


# request_context: uWSGI's (for gevent), accepted and unused, so that the Python module binds
# these functions directly (one call less per message)

def websocket_recv(request_context=None) -> bytes:
    """The next message; waits for it (pinging the client while it waits)."""
    return _session("receive websocket message").recv()


def websocket_recv_nb(request_context=None) -> bytes:
    """The next message if one has arrived, else b"" (never waits)."""
    core = getattr(_local, "core", None)     # _session(), inline, and the core's step for the session
    req = core.request if core is not None else None
    session = req.websocket if req is not None else None
    if session is None:
        _session("receive websocket message")   # (raises)
    msg = session.recv_nb(req.switches if getattr(core, "gen", None) is not None else -1)
    return b"" if msg is None else msg


def websocket_send(msg, request_context=None) -> None:
    core = getattr(_local, "core", None)     # _session(), inline
    req = core.request if core is not None else None
    session = req.websocket if req is not None else None
    if session is None:
        _session("send websocket message")      # (raises)
    session.send(msg if msg.__class__ is bytes else _payload(msg))


def websocket_send_binary(msg, request_context=None) -> None:
    _session("send websocket binary message").send(msg if msg.__class__ is bytes else _payload(msg), binary=True)
