"""A static file's response, from the request to the last byte.

    Static(opts).serve(core, req) -> False   not a static file: the core calls the app
                                  -> True    answered (the core is done, waiting, or released)

Called by the core before the app, whatever the modifier1 (uwsgid/server/core.py Core.run):
first the worker's file cache (filecache.py: a small file answered during this second is
answered again from memory, no system call but the send); else mapping.py finds the file (or
refuses it: 403), mime.py names its type, rules.py picks the .gz/.br variant and the Expires
header, conditional.py decides 200/206/304/416. The head goes through the Request's own framing
(Content-Length, keep-alive, HTTP or uwsgi socket) as a HeaderBlock (serialized once, kept out
of the app's header-block cache); the body:

  * HEAD, 304, 416, --file-serve-mode x-sendfile / x-accel-redirect: no body; the core finishes.
  * a GET of up to SMALL bytes: the whole file read (and kept in the file cache when its rules
    allow), the answer written with the head, one send; the core finishes.
  * larger: the head, then one non-blocking sendfile(2) of as much as the socket takes; if the
    file is not all out, the rest goes (a) to an offload thread when --offload-threads is set
    (offload.py: the core is released at once, Core.offloaded), else (b) to a FileSender on the
    core's own loop, the core waiting (like an app's generator waiting for a slow client): the
    loop and its other cores go on, the worker's accept too when it has other cores.

--file-serve-mode (uWSGI core/uwsgi.c uwsgi_opt_fileserve_mode): x-sendfile / xsendfile answer
with an `X-Sendfile: REALPATH` header and no body (Apache's mod_xsendfile sends the file),
x-accel-redirect / xaccelredirect / nginx with `X-Accel-Redirect: REALPATH` (nginx; point an
`internal` location at it); Content-Type, Last-Modified, Expires and 304 as usual, no range
(the front end does those). uWSGI ignores an unknown mode; we refuse to start.

Bookkeeping as uWSGI (core/static.c): a file sent (200/206, HEAD, x-* modes) counts in the
core's `static_requests` (scoreboard "static"), an offloaded one in `offloaded_requests` too;
the request is logged with `app: -1`, and a body sent marks it " via sendfile() " (or
" via offload() " when an offload thread sent it), as uWSGI's uwsgi_response_sendfile_do does:
also a small file whose bytes went with the head from memory (uWSGI sends every static body with
sendfile; --log-sendfile logs these requests even under --disable-logging).
"""

from __future__ import annotations

import os
from time import time as _time

from uwsgid.config.options import Option, declare
from uwsgid.net.connection import Connection
from uwsgid.net.request import VIA_OFFLOAD, VIA_SENDFILE, HeaderBlock
from uwsgid.static import conditional
from uwsgid.static.filecache import FileCache
from uwsgid.static.mapping import REFUSED, Mapper, StaticConfigError
from uwsgid.static.mime import MimeTable
from uwsgid.static.pathcache import PathCache, PathCacheError
from uwsgid.static.rules import Rules, accepted_encodings
from uwsgid.static.sender import FileSender, client_gone
from uwsgid.util.log import log

declare(
    Option("offload-threads", kind="int", default=0, group="static", aliases=("offload-thread",), metavar="N",
           help="per worker, N threads that send static files' bodies, freeing the worker's core (and a sync "
                "worker) during large downloads"),
    Option("file-serve-mode", kind="str", group="static", metavar="MODE",
           help="how static files' bodies are sent: default (by the server: sendfile, offload threads), "
                "x-sendfile (an X-Sendfile header for Apache), x-accel-redirect or nginx (an X-Accel-Redirect "
                "header for nginx)"),
)

MODES = {"": 0, "default": 0, "x-accel-redirect": 1, "xaccelredirect": 1, "nginx": 1,
         "x-sendfile": 2, "xsendfile": 2}
_MODE_HEADER = (None, b"X-Accel-Redirect", b"X-Sendfile")
SMALL = 32 * 1024       # bodies read and sent with the head in one write

_pread = os.pread
_ZERO_COPY = Connection.sendfile       # a connection with its own sendfile (TLS) cannot take sendfile(2)
_close = os.close
_decide = conditional.decide
_http_date = conditional.http_date


class Static:
    def __init__(self, opts, mime: MimeTable | None = None):
        self.mapper = Mapper(opts)
        self.rules = Rules(opts)
        mode = (opts.get("file-serve-mode", None) or "").strip().lower()
        if mode not in MODES:
            raise StaticConfigError(f"--file-serve-mode {mode}: unknown mode (x-sendfile, x-accel-redirect, "
                                    f"nginx or default)")
        self.mode = MODES[mode]
        self.offload_threads = max(0, int(opts.get("offload-threads", 0) or 0))
        try:
            self.mapper.paths = PathCache.from_options(opts)
        except PathCacheError as e:
            raise StaticConfigError(str(e)) from None
        self.mime = mime if mime is not None else MimeTable.load(opts.get("mime-file", []) or [])
        self.pool = None
        # small files' answers in memory (filecache.py); the x-* modes send no body
        rules = self.rules
        self.files = None if self.mode else FileCache(
            by_docroot=self.mapper.docroot, by_encoding=rules.gzip_any,
            by_uri=any(field == 2 for field, _, _ in rules.regex_rules))

    def lane_files(self):
        """(file cache entries, mountpoints or None for any path) for the native lane, which
        answers a plain GET of a small file cached this second (core/cpython/lane_static.c); None
        when its answer may depend on more than PATH_INFO, or files are not sent by us (x-* modes)."""
        files = self.files
        if files is None or not files.plain or self.mapper.paths is not None:
            return None
        mapper = self.mapper
        mounts = tuple(root.mount for root in mapper.roots)
        return files.lane_entries, (None if mapper.docroot or b"" in mounts else mounts)

    def describe(self) -> list[str]:
        out = self.mapper.describe()
        if self.mapper.paths is not None:
            out.append(self.mapper.paths.describe())
        if self.offload_threads:
            out.append(f"[uwsgi-static] {self.offload_threads} offload threads per worker")
        return out

    def worker_start(self, worker) -> None:
        """In each worker after fork: the roots' real paths, and the offload threads."""
        self.mapper.resolve()
        if self.offload_threads and self.mode == 0:
            from uwsgid.static.offload import OffloadPool  # threads and a loop: only when asked for
            self.pool = OffloadPool(self.offload_threads, worker.id)
            self.pool.start()

    # ---- per request ------------------------------------------------------------------------
    def serve(self, core, req) -> bool:
        method = req.method
        if method != b"GET" and method != b"HEAD":
            return False
        v = req.vars
        path = v.get(b"PATH_INFO")
        if not path:
            return False
        files = self.files
        key = now = None
        if files is not None:
            now = _time()
            key = files.key(path, v)
            e = files.get(key, int(now))
            if e is not None:       # answered from memory: no system call until the send
                req.app_id = -1
                req.switches = 0
                self._from_memory(core, req, v, e.fields, e.mtime, e.last_modified, e.body, e.ok)
                return True
        found = self.mapper.find(path, v)
        if found is None or found is REFUSED:
            if files is not None:
                files.drop(key)
            if found is None:
                return False
        req.app_id = -1         # as uWSGI logs a static file: no app, no switch
        req.switches = 0
        if found is REFUSED:
            req.error_response(403, b"Forbidden", b"Forbidden\n")
            core.finish()
            return True
        try:
            self._respond(core, req, v, found, key, now)
        finally:
            if found.fd >= 0:      # not handed on (an error on the way): ours to close
                _close(found.fd)
                found.fd = -1
        return True

    def _fields(self, v: dict, found) -> list:
        """The head fields but Content-Length, Content-Range and Last-Modified, in uWSGI's order
        (Content-Encoding, Content-Type, Expires, Vary). A .gz/.br variant replaces found's file."""
        real = found.real
        ctype = self.mime.lookup(real)
        rules = self.rules
        fields = []
        vary = rules.gzip_any and rules.covers(real)
        if vary:
            ae = v.get(b"HTTP_ACCEPT_ENCODING")
            if ae:
                for suffix, coding in accepted_encodings(ae):
                    variant = self.mapper.sibling(found, suffix)
                    if variant is not None:
                        _close(found.fd)
                        found.fd, found.st, found.real = variant.fd, variant.st, variant.real
                        fields.append((b"Content-Encoding", coding))
                        break
        if ctype is not None:
            fields.append((b"Content-Type", ctype))
        if rules.expires_any:
            expires = rules.expires(real, v, ctype, int(found.st.st_mtime))
            if expires is not None:
                fields.append((b"Expires", expires))
        if vary:
            fields.append((b"Vary", b"Accept-Encoding"))
        return fields

    def _respond(self, core, req, v: dict, found, key, now) -> None:
        """Answer with found's file. found.fd is set to -1 once closed or handed on.

        Every head is a HeaderBlock (net/request.py): serialized here, kept out of the
        request layer's shared cache of header blocks, which is the app's."""
        fields = self._fields(v, found)
        st = found.st
        mtime = int(st.st_mtime)
        size = st.st_size
        lm = (b"Last-Modified", _http_date(mtime))
        files = self.files
        if files is not None and size <= SMALL and req.method == b"GET":
            fd = found.fd
            found.fd = -1
            try:
                data = _pread(fd, size, 0)
            finally:
                _close(fd)
            e = files.keep(key, st, now, data, mtime, fields, lm)
            self._from_memory(core, req, v, fields, mtime, lm, data, None if e is None else e.ok)
            return
        if files is not None and size > SMALL and key in files.entries:
            files.drop(key)         # grown past SMALL: not a small file any more
        mode = self.mode
        if b"HTTP_IF_MODIFIED_SINCE" in v or b"HTTP_RANGE" in v:
            status, start, end = _decide(v, mtime, size, mode == 0)
            if status == 304:
                self._not_modified(core, req, fields, lm)
                return
            if status == 416:
                self._unsatisfiable(core, req, size)
                return
        else:
            status, start, end = 200, 0, size - 1
        self._count(core)
        if mode:
            req.start_response(b"200 OK", HeaderBlock([*fields, lm, (_MODE_HEADER[mode], found.real)]))
            core.finish()
            return
        count = end - start + 1
        if status == 206:
            req.start_response(b"206 Partial Content", HeaderBlock([
                *fields, (b"Content-Length", b"%d" % count),
                (b"Content-Range", b"bytes %d-%d/%d" % (start, end, size)), lm]))
        else:
            req.start_response(b"200 OK", HeaderBlock([*fields, (b"Content-Length", b"%d" % count), lm]))
        if count <= 0 or req.method == b"HEAD":
            core.finish()
            return
        fd = found.fd
        req.via = VIA_SENDFILE
        if count <= SMALL:
            data = _pread(fd, count, start)
            found.fd = -1
            _close(fd)
            if data:
                req.write(data)
            core.finish()    # a file that shrank meanwhile: a short body, the connection closed
            return
        req.flush()          # the head
        conn = req.conn
        found.fd = -1        # from here on, _body's
        if type(conn).sendfile is not _ZERO_COPY:      # --https-socket: encrypted a slice at a time
            try:
                self._sent(req, conn.sendfile(fd, start, count))
            finally:
                _close(fd)
            core.finish()
            return
        if conn.out:         # the head is not all out (a full socket): the body after it
            conn.on_drain = lambda: self._body(core, req, conn, fd, start, count)
            return
        self._body(core, req, conn, fd, start, count)

    def _from_memory(self, core, req, v: dict, fields: list, mtime: int, lm: tuple, body: bytes, ok) -> None:
        """Answer with a small file's bytes (the file cache's, or read just now); ok: its 200 head."""
        size = len(body)
        if b"HTTP_IF_MODIFIED_SINCE" in v or b"HTTP_RANGE" in v:
            status, start, end = _decide(v, mtime, size, True)
            if status == 304:
                self._not_modified(core, req, fields, lm)
                return
            if status == 416:
                self._unsatisfiable(core, req, size)
                return
            if status == 206:
                self._count(core)
                req.start_response(b"206 Partial Content", HeaderBlock([
                    *fields, (b"Content-Length", b"%d" % (end - start + 1)),
                    (b"Content-Range", b"bytes %d-%d/%d" % (start, end, size)), lm]))
                if req.method == b"GET":
                    req.via = VIA_SENDFILE
                    req.write(body[start:end + 1])
                core.finish()
                return
        self._count(core)
        req.start_response(b"200 OK", ok if ok is not None else
                           HeaderBlock([*fields, (b"Content-Length", b"%d" % size), lm]))
        if size and req.method == b"GET":
            req.via = VIA_SENDFILE
            req.write(body)
        core.finish()

    @staticmethod
    def _count(core) -> None:
        """A file sent (200/206, HEAD, the x-* modes): the core's static_requests, as uWSGI."""
        w = core.worker
        sb = w.scoreboard
        if sb is not None:
            sb.add_error(w.id, core.id, "static")

    @staticmethod
    def _not_modified(core, req, fields: list, lm: tuple) -> None:
        req.start_response(b"304 Not Modified",
                           HeaderBlock([h for h in fields if h[0] != b"Content-Encoding"] + [lm]))
        core.finish()

    @staticmethod
    def _unsatisfiable(core, req, size: int) -> None:
        req.start_response(b"416 Requested Range Not Satisfiable",
                           HeaderBlock([(b"Content-Range", b"bytes */%d" % size), (b"Content-Length", b"0")]))
        core.finish()

    def _body(self, core, req, conn, fd: int, offset: int, count: int) -> None:
        """Send the body: what the socket takes now, the rest offloaded or waited for."""
        if conn.closed:
            _close(fd)
            core._client_gone()
            return
        try:
            n = os.sendfile(conn.fd, fd, offset, count)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as e:
            _close(fd)
            self._failed(core, conn, e)
            return
        if n >= count:
            _close(fd)
            self._sent(req, n)
            core.finish()
            return
        offset += n
        left = count - n
        pool = self.pool
        if pool is not None:
            self._offload(core, req, conn, pool, fd, offset, left, n)
            return
        # the core waits for its body; a close of the connection (by a read error) wakes it
        sender = None

        def done(error, sent):
            conn.on_drain = None
            if error is None:
                self._sent(req, n + sent)
                core.finish()
            else:
                self._failed(core, conn, error)

        def aborted():
            sender.cancel()
            core._client_gone()
        conn.on_drain = aborted
        sender = FileSender(core.loop, conn.fd, fd, offset, left, conn.timeout, done)
        sender.start()

    @staticmethod
    def _sent(req, n: int) -> None:
        # the body went around Request.write: its accounting, so that the final flush sees it complete
        req.response_size += n
        req._remaining -= n

    def _failed(self, core, conn, error) -> None:
        why = None
        if isinstance(error, TimeoutError):
            why = f"socket timeout: {conn.peer} stopped reading the response, dropped"
        elif not client_gone(error):
            log(f"static file to {conn.peer}: {error}")
        conn.on_drain = None
        conn.close()
        core._client_gone(why)

    def _offload(self, core, req, conn, pool, fd: int, offset: int, left: int, sent: int) -> None:
        """The rest of the body to an offload thread; the core is released now (offload.py)."""
        loop = core.loop
        w = core.worker
        wid, cid = w.id, core.id
        conn.paused = True
        loop.remove_reader(conn.fd)
        self._sent(req, sent + left)      # uWSGI counts an offloaded body whole, when handed over
        req.via = VIA_OFFLOAD
        sb = w.scoreboard
        if sb is not None:
            sb.add_error(wid, cid, "offloaded")

        def back(error, _sent):           # in the offload thread
            loop.call_soon(lambda: self._offload_done(w, cid, conn, req, error))
        pool.submit(conn.fd, fd, offset, left, conn.timeout, back)
        core.offloaded()

    def _offload_done(self, w, cid: int, conn, req, error) -> None:
        """Back in the connection's loop: end its request (keep-alive goes on), or close it."""
        if conn.closed:
            return
        if error is None:
            conn.request_done(req)
            return
        if isinstance(error, TimeoutError):
            log(f"socket timeout: {conn.peer} stopped reading the response, dropped")
        elif not client_gone(error):
            log(f"static file to {conn.peer}: {error}")
        elif not getattr(w, "ignore_write_errors", False):     # --ignore-write-errors
            log(f"client {conn.peer} went away during the offloaded response to "
                f"{req.method.decode('latin-1')} {req.vars.get(b'REQUEST_URI', b'')[:200].decode('latin-1')}")
        sb = w.scoreboard
        if sb is not None:
            sb.add_error(w.id, cid, "write")
        conn.busy = False
        conn.close()
