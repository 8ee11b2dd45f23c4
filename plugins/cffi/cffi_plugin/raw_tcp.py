"""Raw TCP handlers in Python: uWSGI's --python-raw, for the connections of a --raw-socket
served by modifier1 0 (uwsgid/net/raw.py has the connection side).

    --python-raw FILE            the FILE's --callable (default `application`), as uWSGI
    --python-raw FILE:NAME       or its callable NAME
    --python-raw MODULE:NAME     or a module's (MODULE alone: its --callable)

The callable gets the connection's socket object (see uwsgid/net/raw_socket.py RawSocket: recv,
recvline, recv_exactly, send, sendall, close, settimeout, preread, peer, fileno). uWSGI gives
its raw callable a file descriptor: the object is one too (fileno() and __index__), so that
`os.read(fd, n)` / `os.write(fd, data)` handlers written for uWSGI work unchanged. As in uWSGI,
what the callable returns is sent: bytes, or an iterable of bytes (a generator: each yield is
a turn for the core, which waits on what uwsgi.wait_fd_read / wait_fd_write / async_sleep
armed, so a generator handler is cooperative under --async without greenlets).

With --greenlet (under --async N) each connection's handler runs in a greenlet: a recv or
send that would block suspends only its core (uwsgid.plugins.api.wait_readable). Without it
they wait in place (poll), holding the thread: fine for sync workers and --threads.
Under --greenlet, sendall's bytes go out at the end of the loop turn, with those of the
other connections it resumed (RawSocket.batch_writes; flush() writes them now).
A handler that raises gets its traceback in the log and its connection closed; the peer
leaving (ConnectionError) or going silent past the timeout (TimeoutError) is one log line.
"""

from __future__ import annotations

from uwsgid.config.options import Option

RAW_OPTIONS = [
    Option("python-raw", kind="str", group="cffi", metavar="FILE[:CALLABLE]|MODULE:CALLABLE",
           help="the Python callable that serves each connection of a --raw-socket (modifier1 0): it gets a "
                "socket object (recv/send/sendall/close, preread, peer; usable as the fd, as uWSGI's)"),
]


class RawHandler:
    """The loaded --python-raw callable, and how its connections run."""

    def __init__(self, handler, spec: str, green: bool):
        self.handler = handler
        self.spec = spec
        self.green = green

    @classmethod
    def load(cls, spec: str, callable_name: str, green: bool) -> "RawHandler":
        """Raises AppLoadError (one line; the traceback logged) when it cannot be loaded."""
        from uwsgid.plugins.contract import AppLoadError
        from uwsgid.util.log import log

        from .loader import is_file_spec, load_file, load_module, user_traceback
        target, sep, name = spec.rpartition(":")
        if not sep or not target or "/" in name or name.endswith(".py"):
            target, name = spec, ""
        try:
            if is_file_spec(target):
                handler = load_file(target, name or callable_name)
            else:
                handler = load_module(target + (":" + name if name else ""), callable_name)
        except AppLoadError as e:
            raise AppLoadError(f"--python-raw {spec}: {e}") from None
        except Exception as e:
            log(f"unable to load the raw handler {spec}:\n{user_traceback(e)}")
            raise AppLoadError(f"--python-raw {spec}: {type(e).__name__}: {e}") from e
        log(f"raw handler {spec} ready{' (greenlet cores)' if green else ''}")
        return cls(handler, spec, green)

    def serve(self, req):
        """Plugin.raw_request: None when the connection is done, else what the core steps."""
        core = req.core
        if self.green and core is not None and getattr(core, "to_loop", 1) is None:
            return _green(core, self.handler, req)
        return run(self.handler, req)


def run(handler, req):
    """Call the handler; send what it returned (bytes now, an iterable step by step)."""
    try:
        res = handler(req.sock)
        if res is None:
            return None
        if isinstance(res, (bytes, bytearray, memoryview, str)):
            req.sock.sendall(res)
            return None
    except Exception as e:
        if req.ended_by(e):
            return None
        raise
    return _drive(req, res)


def _drive(req, res):
    it = iter(res)
    try:
        while True:
            try:
                chunk = next(it)
                if chunk:
                    req.sock.sendall(chunk)
            except StopIteration:
                return
            except Exception as e:
                if req.ended_by(e):
                    return
                raise
            yield
    finally:
        close = getattr(res, "close", None)
        if close is not None:
            close()


# ---- --greenlet: the handler in a greenlet of its own -------------------------------------------

_GreenRaw = None


def _green_class():
    global _GreenRaw
    if _GreenRaw is None:
        from .greenlet_cores import _GreenRun

        class GreenRaw(_GreenRun):
            """greenlet_cores' request greenlet, running a raw handler instead of a WSGI app."""
            __slots__ = ()

            def _main(self, handler, req):
                try:
                    res = run(handler, req)
                    if res is None:
                        return
                    for _ in res:
                        self.g.parent.switch()    # a turn: the core waits on what was armed, if anything
                finally:
                    _flush_end(req)

        _GreenRaw = GreenRaw
    return _GreenRaw


def _flush_end(req) -> None:
    """What sendall held for the end of the turn goes out before the connection is closed."""
    try:
        req.sock.flush()
    except OSError as e:
        if not req.ended_by(e):
            raise


def _green(core, handler, req):
    from uwsgid.plugins import api
    sock = req.sock
    sock.wait_readable = api.wait_readable
    sock.wait_writable = api.wait_writable
    sock.batch_writes()
    green = _green_class()(core, None)     # no Response: nothing to park at a wait
    core.to_loop = green.to_loop
    try:
        green.g.switch(handler, req)
    except BaseException:
        core.to_loop = None
        raise
    if green.g.dead:
        core.to_loop = None
        return None
    return green
