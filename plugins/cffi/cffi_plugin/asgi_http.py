"""One ASGI HTTP request: the scope, the app's receive/send, and the generator the core steps.

The request lives on a core like a WSGI one (scoreboard, harakiri, request log, max-requests),
the app's coroutine on the worker's asyncio loop (asgi_loop.Driver). They meet here:

  * `serve()` starts the app's task and runs its first steps at once: a small response is
    complete before serve() returns, and the core finishes it without one suspension (the
    head is held from http.response.start to the first body message, so that such a response
    goes out in one send, serialised by the server's `req.respond()`);
  * otherwise the core steps `HttpCycle.steps()`, which parks the core (api.park) until the app
    sends something or ends (`_wake`, api.resume): each streamed body chunk is flushed, and the
    app's `send()` returns only when the client has taken it (back-pressure through the
    connection's drain);
  * `receive()` gives the body in chunks: as they arrive when the request was dispatched at the
    end of its head (`req.stream`, uwsgid/net/protocols/stream.py: the connection reads only
    while the app takes the body, and `http.disconnect` comes when the client goes mid-body),
    else from what the server held (in memory, or a temp file over --post-buffering / 8 MB);
    then it waits for the client to go (`http.disconnect`), watching the connection's reads;
  * the response is complete at the last `http.response.body`: the request ends there, and the
    app's task may go on (Starlette's background tasks); receive() then says `http.disconnect`.
"""

from __future__ import annotations

import http
import io

from uwsgid.plugins import api
from uwsgid.util.log import log

from .environ import url_scheme
from .loader import user_traceback

BODY_CHUNK = 256 * 1024        # receive() reads a spooled body this much at a time
SEND_SLICE = 256 * 1024        # a larger body message goes out in slices, waiting for the client
ASGI = {"version": "3.0", "spec_version": "2.4"}
_DISCONNECT = {"type": "http.disconnect"}
_EMPTY_BODY = {"type": "http.request", "body": b"", "more_body": False}
_STATUS_LINES: dict = {}
_HEADER_NAMES: dict = {}


class ClientDisconnected(OSError):
    """send() after the client went away (ASGI spec 2.4: an OSError subclass)."""


def status_line(code) -> bytes:
    line = _STATUS_LINES.get(code)
    if line is None:
        if type(code) is not int or not 100 <= code <= 999:
            raise RuntimeError(f"ASGI http.response.start: invalid status {code!r}")
        try:
            reason = http.HTTPStatus(code).phrase
        except ValueError:
            reason = "Unknown"
        line = _STATUS_LINES[code] = b"%d %b" % (code, reason.encode("latin-1"))
    return line


def _header_name(key: bytes):
    """The ASGI header name of a CGI var (HTTP_X_Y -> b"x-y"), or None for a var that is not a
    header; cached (a bounded number of names)."""
    if key[:5] == b"HTTP_":
        name = key[5:].lower().replace(b"_", b"-")
    elif key == b"CONTENT_TYPE" or key == b"CONTENT_LENGTH":
        name = key.lower().replace(b"_", b"-")
    else:
        name = None
    if len(_HEADER_NAMES) < 4096:
        _HEADER_NAMES[key] = name
    return name


_VERSIONS = {b"HTTP/1.1": "1.1", b"HTTP/1.0": "1.0", b"HTTP/2": "2", b"HTTP/2.0": "2"}
_SERVERS: dict = {}     # (SERVER_NAME, SERVER_PORT) -> the scope's "server"
_MISSING = object()


def _server(name: bytes, port: bytes):
    key = (name, port)
    server = _SERVERS.get(key, _MISSING)
    if server is _MISSING:
        try:
            server = (name.decode("latin-1"), int(port or 80))
        except ValueError:
            server = None
        if len(_SERVERS) < 256:
            _SERVERS[key] = server
    return server


def build_scope(req, script_name: str, path_info: str, state: dict) -> dict:
    """The ASGI HTTP scope of a request (its CGI vars: what uWSGI's front ends send)."""
    return scope_from_vars(req.vars, req.method, script_name, path_info, state)


def scope_from_vars(v: dict, method: bytes, script_name: str, path_info: str, state: dict) -> dict:
    """The ASGI HTTP scope from CGI vars: one pass over them, the names and the constant parts
    from caches."""
    names = _HEADER_NAMES
    headers = []
    for k, val in v.items():
        n = names.get(k, _MISSING)
        if n is _MISSING:
            n = _header_name(k)
        if n is not None:
            headers.append((n, val))
    get = v.get
    proto = get(b"SERVER_PROTOCOL", b"HTTP/1.1")
    version = _VERSIONS.get(proto)
    if version is None:
        version = proto[5:].decode("latin-1") if proto.startswith(b"HTTP/") else "1.1"
    uri = get(b"REQUEST_URI", b"")
    q = uri.find(b"?")
    addr = get(b"REMOTE_ADDR")
    if addr is None:
        client = None
    else:
        port = get(b"REMOTE_PORT")
        try:
            client = (addr.decode("latin-1"), int(port) if port else 0)
        except ValueError:
            client = None
    scheme = "http" if b"UWSGI_SCHEME" not in v and b"HTTPS" not in v else url_scheme(v)
    # PATH_INFO is percent-decoded bytes (CGI); ASGI wants text, UTF-8 as browsers send it
    path = script_name + path_info
    return {
        "type": "http",
        "asgi": ASGI,
        "http_version": version,
        "method": method.decode("latin-1"),
        "scheme": scheme,
        "path": path if path.isascii() else path.encode("latin-1").decode("utf-8", "surrogateescape"),
        "raw_path": uri if q < 0 else uri[:q],
        "query_string": get(b"QUERY_STRING", b""),
        "root_path": script_name if script_name.isascii() else
        script_name.encode("latin-1").decode("utf-8", "surrogateescape"),
        "headers": headers,
        "client": client,
        "server": _server(get(b"SERVER_NAME", b"localhost"), get(b"SERVER_PORT", b"")),
        "state": state.copy(),
    }


class HttpCycle:
    __slots__ = ("req", "conn", "core", "driver", "app", "task", "active", "parked", "started",
                 "complete", "gone", "body", "body_done", "flush_fut", "gone_fut", "reader", "where", "head",
                 "body_fut", "lane_scope", "lane_result", "run", "token")

    def __init__(self, req, driver, app, core=None):
        # req None: a request the native lane read (asgi_lane.py), no Request made yet; core is
        # then its core, and attach() gives the Request when the Python path takes it over
        self.req = req
        self.conn = req.conn if req is not None else None
        self.core = req.core if req is not None else core
        self.driver = driver
        self.app = app                  # the loader's App record: requests, exceptions
        self.task = None
        self.active = True              # the core still runs this request
        self.parked = False             # the core is parked until _wake
        self.started = False
        self.head = None                # (status line, headers) of http.response.start, not yet given
        self.complete = False
        self.gone = False               # the client went away
        self.body = None                # a file-like body, read in chunks by receive()
        self.body_done = False          # the last http.request message was given
        self.flush_fut = None           # the app's send() waiting for its chunk to go out
        self.gone_fut = None            # the app's receive() waiting for the client to go
        self.reader = None              # our reader on the connection while receive() waits
        self.where = None
        self.body_fut = None            # the app's receive() waiting for body bytes (req.stream)
        self.lane_scope = None          # the lane's request: its scope (no Request yet)
        self.lane_result = None         # the lane's request: (status line, headers, body) when complete
        self.run = None                 # the lane's request: what start() returned
        self.token = None               # the lane's request, deferred: its token (lane_defer.c)

    def attach(self, req) -> None:
        """The Python path takes over the lane's request: its Request from now on."""
        self.req = req
        self.conn = req.conn
        self.core = req.core

    def _take(self):
        """The lane's request, made a Request now (the response is streamed: the Python path
        sends it); else self.req."""
        req = self.req
        if req is None:
            if self.token is not None:
                return self._take_deferred()
            take = self.core.take_request
            req = take() if take is not None else None
            if req is None:
                raise RuntimeError("ASGI: the request could not be taken from the native lane")
            self.attach(req)
        return req

    def _take_deferred(self):
        """A deferred lane request goes the Python way (a streamed body, a wait for the client to
        go, an error): its Request now, and the core steps the cycle from the loop's next turn,
        as for a request the lane resumed (asgi_lane.resume)."""
        token = self.token
        self.token = None
        req = token.owner.take_deferred(token)
        record = self.app
        record.requests += 1
        req.app_id = record.id
        self.attach(req)
        core = self.core
        run = self.run
        self.driver.loop.ready.append(lambda: core.respond(run))
        return req

    # ---- what the app calls ---------------------------------------------------------------
    async def receive(self):
        if not self.body_done:
            req = self.req
            if req is None:     # the lane's request: no body (the lane takes none)
                self.body_done = True
                return _EMPTY_BODY.copy()
            stream = req.stream
            if stream is None:
                return self._body_message()
            if self.active:
                if stream.done:     # all of it in already (a small body): no wait
                    self.body_done = True
                    return {"type": "http.request", "body": stream.take(), "more_body": False}
                return await self._stream_message(stream)
            self.body_done = True       # the request ended: the rest of the body was dropped
        if self.complete or self.gone or not self.active:
            return _DISCONNECT
        if self.token is not None:
            self._take_deferred()   # the connection is watched by the Python path's Connection
        fut = self.gone_fut
        if fut is None:
            fut = self.gone_fut = self.driver.aloop.create_future()
            self.driver.loop.ready.append(self._watch)    # after the connection's own start()
        await fut
        return _DISCONNECT

    async def _stream_message(self, stream):
        """The next http.request of a body arriving while the app runs: what is there, else
        wait for bytes, the body's end or the client going."""
        read_ahead = False
        while True:
            if stream.chunks:
                data = stream.take()
                if stream.done and not stream.chunks:
                    self.body_done = True
                return {"type": "http.request", "body": data, "more_body": not self.body_done}
            if stream.done:
                self.body_done = True
                return _EMPTY_BODY.copy()
            if stream.gone or self.gone or not self.active:
                self.body_done = True
                self._client_gone()
                return _DISCONNECT
            conn = self.conn
            if not read_ahead and not (conn.paused or conn.closed or conn.eof):
                # what the kernel already holds, now: no round trip through the loop per read
                read_ahead = True
                conn.on_readable()
                continue
            read_ahead = False
            fut = self.body_fut = self.driver.aloop.create_future()
            stream.waiter = self._body_arrived
            try:
                await fut
            finally:
                self.body_fut = None
                if stream.waiter is not None and stream.waiter == self._body_arrived:
                    stream.waiter = None

    def _body_arrived(self) -> None:
        """The stream's waiter (called from the worker's loop): body bytes, its end, or the
        client gone."""
        fut = self.body_fut
        if fut is not None and not fut.done():
            fut.set_result(None)
            self.driver.poke()

    def _drop_body(self) -> None:
        """The request ends: a body still arriving is read and dropped, so that the connection
        can parse what follows it."""
        req = self.req
        stream = req.stream if req is not None else None
        if stream is not None and not stream.done and not stream.discard:
            stream.abandon()
        fut = self.body_fut
        if fut is not None and not fut.done():
            fut.set_result(None)
            self.driver.poke()

    def _body_message(self) -> dict:
        body = self.body
        if body is None:
            req = self.req
            if not req.input_terminated and req.vars.get(b"CONTENT_LENGTH", b"0") in (b"", b"0"):
                self.body_done = True
                return _EMPTY_BODY.copy()
            inp = req.input
            if type(inp) is io.BytesIO:     # in memory: all of it at once, no copy
                self.body_done = True
                return {"type": "http.request", "body": inp.read(), "more_body": False}
            body = self.body = inp
        data = body.read(BODY_CHUNK)
        if len(data) < BODY_CHUNK:
            self.body_done = True
        return {"type": "http.request", "body": data, "more_body": not self.body_done}

    async def send(self, message):
        kind = message["type"]
        if kind == "http.response.body":
            if not self.started:
                raise RuntimeError("ASGI: http.response.body sent before http.response.start")
            if self.complete:
                raise RuntimeError("ASGI: http.response.body sent after the response was complete")
            conn = self.conn
            if self.gone or (conn is not None and conn.closed):
                self._client_gone()
                raise ClientDisconnected("the client went away")
            body = message.get("body", b"")
            more = message.get("more_body", False)
            head = self.head
            if head is not None:
                if not more and len(body) <= SEND_SLICE:
                    # the whole response at once: head and body in one C-built send
                    self.head = None
                    req = self.req
                    if req is None:
                        token = self.token
                        if token is None:   # the lane's request, in its first steps: the lane sends it
                            self.lane_result = (head[0], head[1], body)
                            self.complete = True
                            return
                        self.token = None
                        if token.owner.complete(token, head[0], head[1], body):    # sent from C
                            self.complete = True
                            self.active = False
                            return
                        self.token = token  # a shape the lane leaves to the Python path
                        req = self._take()
                    respond = getattr(req, "respond", None)
                    if respond is None or not respond(head[0], head[1], body):
                        self._start(head)
                        if body:
                            self.req.write(body)
                    self.complete = True
                    self._wake()
                    return
                self.head = None
                self._start(head)
            if len(body) > SEND_SLICE:      # the client takes a large body slice by slice
                view = memoryview(body)
                for i in range(0, len(body) - SEND_SLICE, SEND_SLICE):
                    await self._flush(bytes(view[i:i + SEND_SLICE]))
                body = bytes(view[i + SEND_SLICE:])
            if not more:
                if body:
                    self.req.write(body)
                self.complete = True
                self._wake()
                return
            await self._flush(body)
            return
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("ASGI: http.response.start sent twice")
            conn = self.conn
            if self.gone or (conn is not None and conn.closed):
                self._client_gone()
                raise ClientDisconnected("the client went away")
            headers = message.get("headers", ())
            if type(headers) is not list:
                headers = list(headers)
            # held until the first body message: a complete response goes out in one send
            self.head = (status_line(message["status"]), headers)
            self.started = True
            return
        raise RuntimeError(f"ASGI: unexpected message {kind!r} on an HTTP connection")

    def _start(self, head) -> None:
        headers = [(bytes(n), bytes(v)) for n, v in head[1]]
        try:
            self._take().start_response(head[0], headers)
        except ValueError as e:
            raise RuntimeError(f"ASGI http.response.start: {e}") from None

    async def _flush(self, data: bytes) -> None:
        if data:
            self.req.write(data)
        fut = self.flush_fut = self.driver.aloop.create_future()
        self._wake()
        await fut
        if self.gone:
            raise ClientDisconnected("the client went away")

    # ---- the core's side ------------------------------------------------------------------
    def steps(self):
        """The generator the core steps (uwsgid/plugins/contract.py)."""
        req = self.req
        conn = self.conn
        try:
            while True:
                fut = self.flush_fut
                if fut is not None:
                    if req._buf:
                        req.flush()
                    if conn.out and not conn.closed:
                        yield       # suspended until the client takes the bytes (conn.on_drain)
                        continue
                    self.flush_fut = None
                    if not fut.done():
                        fut.set_result(None)
                        self.driver.poke()
                if self.complete:
                    return
                task = self.task
                if task.done():
                    self._ended(task)
                    return
                self.parked = True
                api.park()
                yield
                self.parked = False
        finally:
            self._end()

    def _wake(self) -> None:
        if self.parked and self.active:
            self.parked = False
            self.driver.wake(self.core)

    def _ended(self, task) -> None:
        """The app returned before completing the response: its error goes to the core (500 or
        a cut body), or the core answers 500 for a response never started."""
        if task.cancelled():
            raise RuntimeError("the ASGI app's task was cancelled before the response was complete")
        exc = task.exception()
        if exc is not None:
            if self.gone:
                return      # the app reacting to the client going (Starlette's ClientDisconnect)
            self._count_exception()
            raise exc
        if self.started:
            raise RuntimeError("the ASGI app returned without completing the response (more_body was True)")

    def _end(self) -> None:
        """The request ends on the core (complete, failed or the client gone)."""
        self.active = False
        if self.parked:
            self.parked = False
            core = self.core
            if core.wait is api._PARKED:
                # the request ended while parked (the client went away): no stale park for the
                # core's next request, which the native lane may give it without Core.run's reset
                core.wait = None
        if self.conn.closed:
            self._client_gone()
        self._unwatch()
        self._drop_body()

    def task_done(self, task) -> None:
        """The app's coroutine ended (an asyncio done callback)."""
        self.driver.inflight.discard(task)
        if self.active:
            if self.token is not None:
                self._take_deferred()   # ended before completing: the core's steps say how (_ended)
            else:
                self._wake()
            return
        if task.cancelled():
            return
        exc = task.exception()
        # after the client left, an error is the app reacting to it (Starlette's ClientDisconnect)
        if exc is not None and not self.gone and not isinstance(exc, ClientDisconnected):
            self._count_exception()
            log(f"[asgi] error in the app after its response ({self._where()})\n{user_traceback(exc)}")

    def _count_exception(self) -> None:
        self.app.exceptions += 1
        if self.req is not None:
            self.req.exception = True

    def _where(self) -> str:
        if self.req is None:
            scope = self.lane_scope
            query = scope["query_string"]
            uri = scope["raw_path"] + (b"?" + query if query else b"")
            return f"{scope['method']} {uri.decode('latin-1')}"
        v = self.req.vars
        return f"{self.req.method.decode('latin-1')} {v.get(b'REQUEST_URI', b'').decode('latin-1')}"

    # ---- the client going away --------------------------------------------------------------
    def _client_gone(self) -> None:
        if self.gone:
            return
        self.gone = True
        for fut in (self.flush_fut, self.gone_fut):
            if fut is not None and not fut.done():
                fut.set_result(None)
        self.driver.poke()
        self._wake()

    def _watch(self) -> None:
        """receive() waits for the client to go: read the connection through our reader (the
        connection's own, then a look at what it saw)."""
        if not self.active or self.gone or self.reader is not None:
            return
        conn = self.conn
        if conn.closed or conn.eof:
            self._client_gone()
            return
        loop = conn.loop
        own = loop._readers.get(conn.fd)
        if own is None:
            # not read now (pipelined requests queued): look again in a second
            loop.call_later(1.0, self._watch)
            return

        def on_readable():
            own()
            if conn.closed or conn.eof:
                self._client_gone()
        self.reader = (on_readable, own)
        loop.add_reader(conn.fd, on_readable)

    def _unwatch(self) -> None:
        reader = self.reader
        if reader is None:
            return
        self.reader = None
        conn = self.conn
        if not conn.closed and conn.loop._readers.get(conn.fd) is reader[0]:
            conn.loop.add_reader(conn.fd, reader[1])


def serve(req, driver, app, scope: dict):
    """Run the ASGI app `app` (an App record whose .callable is ASGI 3) for req: None when the
    response is complete at once, else the generator the core steps."""
    cycle = HttpCycle(req, driver, app)
    return start(cycle, driver, app.callable(scope, cycle.receive, cycle.send))


def start(cycle, driver, coro):
    """Run the app's first steps now; None when the response is complete by then (and its task
    too, mostly: then no done callback, no inflight entry), else the generator the core steps."""
    task = cycle.task = driver.start_task(coro)
    if task.done():
        if cycle.complete:
            cycle.active = False
            cycle._drop_body()
            cycle.task_done(task)       # an error after the response: logged
            return None
        return cycle.steps()            # _ended: the app's error, or an incomplete response
    task.add_done_callback(cycle.task_done)
    driver.inflight.add(task)
    if cycle.complete:
        cycle.active = False
        cycle._drop_body()
        return None
    return cycle.steps()
