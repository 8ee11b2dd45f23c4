"""A static file's response, from the request to the last byte.

    Static(opts).serve(core, req) -> False   not a static file: the core calls the app
                                  -> True    answered (the core is done, waiting, or released)

Called by the core before the app, whatever the modifier1 (uwsgid/server/core.py Core.run):
mapping.py finds the file (or refuses it: 403), mime.py names its type, rules.py picks the
.gz/.br variant and the Expires header, conditional.py decides 200/206/304/416. The head goes
through the Request's own framing (Content-Length, keep-alive, HTTP or uwsgi socket); the body:

  * HEAD, 304, 416, --file-serve-mode x-sendfile / x-accel-redirect: no body; the core finishes.
  * up to SMALL bytes: read and written with the head, one send; the core finishes.
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
the request is logged with `app: -1`.
"""

from __future__ import annotations

import os

from uwsgid.config.options import Option, declare
from uwsgid.static import conditional
from uwsgid.static.mapping import REFUSED, Mapper, StaticConfigError
from uwsgid.static.mime import MimeTable
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
        self.mime = mime if mime is not None else MimeTable.load(opts.get("mime-file", []) or [])
        self.pool = None

    def describe(self) -> list[str]:
        out = self.mapper.describe()
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
        found = self.mapper.find(path, v)
        if found is None:
            return False
        req.app_id = -1         # as uWSGI logs a static file: no app, no switch
        req.switches = 0
        if found is REFUSED:
            req.error_response(403, b"Forbidden", b"Forbidden\n")
            core.finish()
            return True
        try:
            self._respond(core, req, v, found)
        finally:
            if found.fd >= 0:      # not handed on (an error on the way): ours to close
                _close(found.fd)
                found.fd = -1
        return True

    def _respond(self, core, req, v: dict, found) -> None:
        """Answer with found's file. found.fd is set to -1 once closed or handed on.

        The headers in uWSGI's order (Content-Type, Content-Length, Last-Modified, with
        Content-Encoding, Expires, Vary, Content-Range where they apply), as tuples: Request
        caches the serialized block of a header tuple set (bounded, first come), which a file
        asked for again hits (4 us of the ~15 a small file costs)."""
        real = found.real
        ctype = self.mime.lookup(real)
        rules = self.rules
        headers = []
        vary = rules.gzip_any and rules.covers(real)
        if vary:
            ae = v.get(b"HTTP_ACCEPT_ENCODING")
            if ae:
                for suffix, coding in accepted_encodings(ae):
                    variant = self.mapper.sibling(found, suffix)
                    if variant is not None:
                        _close(found.fd)
                        found.fd, found.st, found.real = variant.fd, variant.st, variant.real
                        headers.append((b"Content-Encoding", coding))
                        break
        st = found.st
        mtime = int(st.st_mtime)
        size = st.st_size
        mode = self.mode
        if b"HTTP_IF_MODIFIED_SINCE" in v or b"HTTP_RANGE" in v:
            status, start, end = _decide(v, mtime, size, mode == 0)
        else:
            status, start, end = 200, 0, size - 1
        if ctype is not None:
            headers.append((b"Content-Type", ctype))
        if rules.expires_any:
            expires = rules.expires(real, v, ctype, mtime)
            if expires is not None:
                headers.append((b"Expires", expires))
        if vary:
            headers.append((b"Vary", b"Accept-Encoding"))
        lm = (b"Last-Modified", _http_date(mtime))
        if status != 200:
            if status == 304:
                headers.append(lm)
                req.start_response(b"304 Not Modified", [h for h in headers if h[0] != b"Content-Encoding"])
                core.finish()
                return
            if status == 416:
                req.start_response(b"416 Requested Range Not Satisfiable",
                                   [(b"Content-Range", b"bytes */%d" % size), (b"Content-Length", b"0")])
                core.finish()
                return
        w = core.worker
        sb = w.scoreboard
        if sb is not None:
            sb.add_error(w.id, core.id, "static")
        if mode:
            headers.append(lm)
            headers.append([_MODE_HEADER[mode], found.real])
            req.start_response(b"200 OK", headers)
            core.finish()
            return
        count = end - start + 1
        headers.append((b"Content-Length", b"%d" % count))
        if status == 206:
            headers.append((b"Content-Range", b"bytes %d-%d/%d" % (start, end, size)))
            headers.append(lm)
            req.start_response(b"206 Partial Content", headers)
        else:
            headers.append(lm)
            req.start_response(b"200 OK", headers)
        if count <= 0 or req.method == b"HEAD":
            core.finish()
            return
        fd = found.fd
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
        if conn.out:         # the head is not all out (a full socket): the body after it
            conn.on_drain = lambda: self._body(core, req, conn, fd, start, count)
            return
        self._body(core, req, conn, fd, start, count)

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
        else:
            log(f"client {conn.peer} went away during the offloaded response to "
                f"{req.method.decode('latin-1')} {req.vars.get(b'REQUEST_URI', b'')[:200].decode('latin-1')}")
        sb = w.scoreboard
        if sb is not None:
            sb.add_error(w.id, cid, "write")
        conn.busy = False
        conn.close()
