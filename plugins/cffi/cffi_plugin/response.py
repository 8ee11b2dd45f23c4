"""The WSGI response side: start_response (with exc_info), the write callable, the body
iterable (list/tuple written at once, any other iterable stepped a slice at a time as a
generator handler), wsgi.file_wrapper with zero-copy sendfile, and every error path.

Headers are handed to the core (req.start_response) when the first non-empty body chunk is
written or when the body ends (PEP 3333): until then the app may replace them with exc_info.
"""

from __future__ import annotations

import os
import re
import stat
import sys

from uwsgid.plugins.api import stream_watch
from uwsgid.util.log import log

from .loader import user_traceback

# Yield to the core (flush, let other async cores run) after this many body chunks or bytes.
YIELD_CHUNKS = 512
YIELD_BYTES = 65536

_STATUS_RE = re.compile(r"[1-9][0-9][0-9](?: [^\x00-\x08\x0a-\x1f\x7f]*)?\Z")
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
# Hop-by-hop headers belong to the server (PEP 3333). "Connection: close" is let through:
# the core honours it by closing the connection after the response (as gunicorn does).
_HOP_BY_HOP = frozenset(("keep-alive", "proxy-authenticate", "proxy-authorization",
                         "te", "trailer", "trailers", "transfer-encoding", "upgrade"))
_ERROR_BODY = b"500 Internal Server Error\n"

# Status lines and header names repeat: validate and encode each once (bounded caches).
_statuses: dict[str, bytes] = {}
_names: dict[str, bytes] = {}
_CACHE_MAX = 1024
# Whole (name, value) str tuples already validated -> their bytes pair ("Content-Type" with its
# usual value repeats on every response); a smaller bound, values vary more than names.
_pairs: dict[tuple, tuple] = {}
_PAIRS_MAX = 256


class ResponseError(Exception):
    """The app broke the WSGI response protocol; the message names the problem."""


def check_status(status) -> bytes:
    b = _statuses.get(status) if type(status) is str else None
    if b is not None:
        return b
    if not isinstance(status, str):
        raise ResponseError(f"invalid status {status!r}: must be a str like '200 OK', "
                            f"not {type(status).__name__}")
    if not _STATUS_RE.match(status):
        raise ResponseError(f"invalid status {status!r}: must be a 3-digit code, a space and a reason")
    try:
        b = status.encode("latin-1")
    except UnicodeEncodeError:
        raise ResponseError(f"invalid status {status!r}: not latin-1 encodable") from None
    if len(_statuses) < _CACHE_MAX:
        _statuses[status] = b
    return b


def _check_name(name) -> bytes:
    b = _names.get(name) if type(name) is str else None
    if b is not None:
        return b
    if not isinstance(name, str):
        raise ResponseError(f"invalid header name {name!r}: must be a str, not {type(name).__name__}")
    if not _TOKEN_RE.match(name):
        raise ResponseError(f"invalid header name {name!r}")
    if name.lower() in _HOP_BY_HOP:
        raise ResponseError(f"hop-by-hop header {name!r} is not allowed from a WSGI app")
    b = name.encode("latin-1")
    if len(_names) < _CACHE_MAX:
        _names[name] = b
    return b


def check_headers(headers) -> list:
    if not isinstance(headers, (list, tuple)):
        raise ResponseError(f"response headers must be a list of (name, value) tuples, "
                            f"not {type(headers).__name__}")
    out = []
    pairs = _pairs
    for item in headers:
        pair = None
        if type(item) is tuple:
            try:
                pair = pairs.get(item)
            except TypeError:        # an unhashable value: _check_pair says what is wrong
                pass
        out.append(pair or _check_pair(item))
    return out


def _check_pair(item) -> tuple:
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise ResponseError(f"invalid header {item!r}: must be a (name, value) tuple")
    name, value = item
    bname = _check_name(name)
    if type(value) is not str:
        raise ResponseError(f"invalid value for header {name!r}: must be a str, "
                            f"not {type(value).__name__}")
    if "\n" in value or "\r" in value or "\0" in value:
        raise ResponseError(f"invalid value for header {name!r}: contains CR, LF or NUL")
    try:
        pair = (bname, value.encode("latin-1"))
    except UnicodeEncodeError:
        raise ResponseError(f"invalid value for header {name!r}: not latin-1 encodable") from None
    if type(item) is tuple and type(name) is str and len(_pairs) < _PAIRS_MAX:
        _pairs[item] = pair
    return pair


class FileWrapper:
    """wsgi.file_wrapper: iterable over a file-like; a real file is sent with sendfile."""

    def __init__(self, filelike, blksize: int = 8192):
        self.filelike = filelike
        self.blksize = blksize if blksize and blksize > 0 else 8192
        close = getattr(filelike, "close", None)
        if close is not None:
            self.close = close

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration

    def fd_range(self):
        """(fd, offset, count) when the file-like is a regular file, else None."""
        try:
            fd = self.filelike.fileno()
            st = os.fstat(fd)
        except (AttributeError, OSError, ValueError, TypeError):
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        try:
            offset = self.filelike.tell()
        except (AttributeError, OSError, ValueError):
            offset = 0
        return fd, offset, max(0, st.st_size - offset)


class Response:
    """One request's response state. `run(app, environ)` returns None (complete) or a
    generator the core iterates (see uwsgid/plugins/contract.py)."""

    # __weakref__: the native lane's start_response forwards to it (resume)
    __slots__ = ("req", "app", "status", "headers", "committed", "environ", "pending", "stepping", "__weakref__")

    def __init__(self, req, app):
        self.req = req
        self.app = app              # the loader's App record (counts requests/exceptions)
        self.status = None          # validated status bytes, set by start_response
        self.headers = None
        self.committed = False      # headers handed to the core: exc_info can no longer replace them
        self.environ = None
        self.pending = None         # body chunks batched by _stream, not yet given to the core
        # self.stepping: the flush deadline's Watch while the app steps with bytes batched (set by
        # _stream only then; read by park/unpark under --greenlet, so not initialized here)

    # ---- the two callables the app gets -------------------------------------------------

    def start_response(self, status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.committed:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None     # no reference cycle through the traceback
        elif self.status is not None:
            raise ResponseError("start_response() called a second time without exc_info")
        bstatus = check_status(status)
        self.headers = check_headers(headers)
        self.status = bstatus
        return self.write

    def write(self, data):
        if type(data) is not bytes:
            data = _as_bytes(data)
        if self.pending:
            self._emit()            # keep the order of yielded and written data
        if not self.committed:
            if not data:
                return
            self._commit()
        self.req.write(data)

    # ---- driving the app ----------------------------------------------------------------

    def _commit(self):
        if self.committed:
            return
        if getattr(self.req, "websocket", None) is not None:
            self.committed = True       # the 101 went out at the handshake: nothing else does
            return
        if self.status is None:
            raise ResponseError("the app sent body data before calling start_response()")
        self.committed = True
        self.req.start_response(self.status, self.headers)

    def _finish(self):
        if not self.committed:
            self._commit()

    def run(self, app_callable, environ):
        self.environ = environ
        try:
            result = app_callable(environ, self.start_response)
        except Exception:
            return self._raised()
        return self._returned(result)

    def resume(self, environ, status, headers, written, result, exc, lane_start_response):
        """Go on with a request whose app the native lane called (uwsgid/server/native_lane.py):
        what the app did through the lane's start_response and write is done again here, in
        order, then its result or exception is taken as run() takes them. The lane's
        start_response (which a generator may call on its first step, or whose write it may keep)
        forwards to this response from now on."""
        self.environ = environ
        lane_start_response.forward = self
        try:
            if status is not None:
                self.start_response(status, headers)    # checked by the lane already
            for data in written or ():
                self.write(data)
            if exc is not None:
                raise exc
        except Exception:
            return self._raised()
        return self._returned(result)

    def _raised(self):
        if getattr(self.req, "websocket", None) is not None:
            return self._websocket_end(None)
        return self._fail()

    def _returned(self, result):
        if getattr(self.req, "websocket", None) is not None:
            if result is None or isinstance(result, (list, tuple, bytes, str)):
                return self._websocket_end(result)
            # a generator goes on with the session (--async: recv_nb, wait_fd_read, yield)
            self.committed = True
            return self._websocket_session(result)
        rtype = type(result)
        if rtype is list or rtype is tuple:
            respond = getattr(self.req, "respond", None)
            if respond is not None and not self.committed and self.status is not None:
                # the whole body is known: head and body serialised in C, one send (False:
                # not taken, nothing done; e.g. a str item, which the loop below refuses)
                try:
                    if respond(self.status, self.headers, result):
                        self.committed = True
                        return None
                except Exception:
                    return self._fail()
            # write() inlined (the common case: a list of one chunk); a list has no close()
            try:
                req = self.req
                for chunk in result:
                    if type(chunk) is not bytes:
                        chunk = _as_bytes(chunk)
                    if chunk:
                        if not self.committed:
                            self._commit()
                        req.write(chunk)
                self._finish()
            except Exception:
                return self._fail()
            return None
        if rtype is FileWrapper:
            rng = result.fd_range()
            if rng is not None:
                try:
                    if not self.committed and self.headers is not None and \
                            not any(k.lower() == b"content-length" for k, _ in self.headers):
                        # the size is known: let the core frame it with Content-Length
                        self.headers.append((b"Content-Length", b"%d" % rng[2]))
                    self._finish()
                    if rng[2]:
                        self.req.sendfile(*rng)
                except Exception:
                    return self._fail()
                finally:
                    self._close(result)
                return None
        if isinstance(result, (bytes, str)):
            # A common app bug: iterating it would send one byte/char per chunk.
            try:
                raise ResponseError(f"the app returned {rtype.__name__} instead of an iterable of bytes")
            except ResponseError:
                return self._fail()
        return self._start_stream(result)

    def _start_stream(self, result):
        # Step the body inline up to the first yield: short bodies then complete now,
        # synchronously (the core can send Content-Length), as a list does.
        gen = self._stream(result)
        try:
            next(gen)
        except StopIteration:
            return None
        return _resumed(gen)

    def _stream(self, result):
        # Chunks are batched here and handed to the core joined, once per slice: a body of
        # thousands of tiny chunks costs one list append per chunk.
        watch = None
        try:
            try:
                it = iter(result)
            except TypeError:
                raise ResponseError(f"the app returned a non-iterable {type(result).__name__}") from None
            core = getattr(self.req, "core", None)
            has_wait = core is not None and hasattr(core, "wait")
            pending = self.pending = []
            append = pending.append
            size = n = total = 0
            committed = self.committed
            # the body's length when the app declared it (frameworks do): once that much came,
            # it goes out at once, and the steps left run with nothing batched (no flush deadline)
            declared = self.req.app_length if committed else None
            step = it.__next__
            while True:
                if pending:
                    # bytes wait in `pending` while the app runs its next step, which may
                    # block: a flush deadline covers them (uwsgid/net/flusher.py)
                    if watch is None:
                        watch = stream_watch(self._deadline_flush)
                    watch.enter()
                    self.stepping = watch
                    try:
                        chunk = step()
                    except StopIteration:
                        break
                    finally:
                        watch.seq += 1
                        if watch.flushing:
                            watch.wait_flush()
                        self.stepping = None
                else:
                    try:
                        chunk = step()
                    except StopIteration:
                        break
                if type(chunk) is not bytes:
                    chunk = _as_bytes(chunk)
                if chunk:
                    if not committed:
                        # PEP 3333: the first non-empty chunk fixes the headers (exc_info can
                        # no longer replace them) even though it has not been sent yet.
                        self._commit()
                        committed = True
                        declared = self.req.app_length     # read by the core's start_response
                    append(chunk)
                    size += len(chunk)
                    n += 1
                    total += len(chunk)
                    if total == declared:
                        self._emit()
                        self.req.flush()
                        size = n = 0
                    elif size >= YIELD_BYTES or n >= YIELD_CHUNKS or (has_wait and core.wait is not None):
                        self._emit()
                        size = n = 0
                        yield
                else:
                    # An empty chunk gives up the turn (after uwsgi.async_sleep / wait_fd_* /
                    # suspend): the core flushes, waits if armed, and resumes us.
                    self._emit()
                    size = n = 0
                    yield
            self._emit()
            self._finish()
        except GeneratorExit:
            raise                   # the core abandoned the response (client gone)
        except Exception:
            self.pending = None
            self._fail()
        finally:
            if watch is not None:
                watch.close()
            self._close(result)

    def _websocket_session(self, result):
        """A WebSocket session that goes on in the app's generator: the core resumes it at each
        yield (one per message: no chunk batching, what it yields is not sent, the 101 was the
        response), and its end is _websocket_end's."""
        try:
            yield from result
        except GeneratorExit:
            raise                   # the core abandoned it (the client is gone)
        except Exception:
            self._websocket_end(None)
        finally:
            self._close(result)

    def _websocket_end(self, result):
        """The app ran a WebSocket session (uwsgi.websocket_handshake): the 101 was its
        response; what it returns is not sent. A receive error is how a session ends (the
        client left), not an app failure: it is not logged as one."""
        exc = sys.exc_info()[1]
        if exc is not None and not isinstance(exc, OSError):
            log(f"[cffi] error in the app's websocket session\n{user_traceback(exc)}")
        self.committed = True
        if result is not None:
            self._close(result)
        return None

    def park(self):
        """The app leaves its core in the middle of a step (a green thread's wait, see
        greenlet_cores): what is batched goes to the core, which flushes it at the switch, and
        the flusher thread keeps off this response (its lock held) until unpark()."""
        watch = getattr(self, "stepping", None)
        if watch is not None:
            watch.lock.acquire()        # after a deadline flush in progress, if any
            self._emit()

    def unpark(self):
        watch = getattr(self, "stepping", None)
        if watch is not None:
            watch.lock.release()        # nothing batched now: no deadline until the next chunk

    def _deadline_flush(self):
        # the flusher thread, while the app is blocked in its next step (see _stream)
        self._emit()
        self.req.flush()

    def _emit(self):
        pending = self.pending
        if pending:
            if not self.committed:
                self._commit()
            data = b"".join(pending) if len(pending) > 1 else pending[0]
            pending.clear()
            self.req.write(data)

    def _close(self, result):
        close = getattr(result, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                # The body is already complete (or failed and was answered): only log it.
                if self.app is not None:
                    self.app.exceptions += 1
                import traceback
                log("[cffi] error in the response's close()\n" + traceback.format_exc())

    def _fail(self):
        """The app raised (sys.exc_info()). Before the headers went out: log it and answer 500.
        After: log it and re-raise, so that the core cuts the body visibly short."""
        if getattr(self.req, "websocket", None) is not None:
            return self._websocket_end(None)
        app = self.app
        if app is not None:
            app.exceptions += 1
        exc = sys.exc_info()[1]
        where = ""
        env = self.environ
        if env is not None:
            where = f" ({env.get('REQUEST_METHOD', '')} {env.get('REQUEST_URI') or env.get('PATH_INFO', '')})"
        if self.committed:
            # The core logs it with its traceback and cuts the body visibly short.
            raise exc
        log(f"[cffi] error in the app{where}\n{user_traceback(exc)}")
        req = self.req
        req.exception = True            # counted in the request log and the stats
        core = getattr(req, "core", None)
        if core is not None and hasattr(core, "exceptions"):
            core.exceptions += 1
        self.committed = True
        body = _ERROR_BODY
        if isinstance(exc, ResponseError):
            body += str(exc).encode("utf-8", "replace") + b"\n"
        self.req.start_response(b"500 Internal Server Error", [(b"Content-Type", b"text/plain")])
        self.req.write(body)
        return None


def _as_bytes(data) -> bytes:
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise ResponseError(f"response body must be bytes, not {type(data).__name__}")


def _resumed(gen):
    # `gen` already stopped at its first yield inline: give the core that yield, then the rest.
    # A wait the app armed before it stays on the core, which runs our first step once it fires.
    try:
        yield
        yield from gen
    finally:
        gen.close()                 # closed at the first yield: the app's close() still runs
