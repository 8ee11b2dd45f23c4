"""One ASGI WebSocket connection: the `websocket` scope over the server's RFC 6455 session
(uwsgid/net/websocket.py, the one behind uwsgi.websocket_*), so masking, UTF-8, the size limit
(1009, --websocket-max-size), ping/pong (--websocket-ping-freq, --websocket-pong-tolerance) and
close-code checks are the server's, as for a WSGI app.

  * receive() first gives websocket.connect; the app answers websocket.accept (its subprotocol
    and extra headers go in the 101), websocket.close (a 403, as the spec says) or, with the
    websocket.http.response extension, its own HTTP response;
  * after the accept, receive() reads frames on the connection's fd through the asyncio loop
    (the worker's loop stopped reading it at the handshake): websocket.receive with text or
    bytes, then websocket.disconnect with the close code (1006: the connection was lost);
  * send() writes frames without blocking the worker: a client that does not read makes the
    app's send() wait (--socket-timeout, then the session ends and send raises OSError);
  * the request stays on its core until the app returns (the request log says 101, harakiri
    applies as to a WSGI WebSocket); a graceful stop closes open sessions with 1001.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time

from uwsgid.plugins import api
from uwsgid.util.log import log

from .asgi_http import ClientDisconnected, HttpCycle, start
from .loader import user_traceback

OP_TEXT, OP_BINARY, OP_CLOSE = 0x1, 0x2, 0x8
CLOSE_GOING_AWAY, CLOSE_INTERNAL, CLOSE_LOST = 1001, 1011, 1006
_CONNECT = {"type": "websocket.connect"}
_FORBIDDEN = (b"403 Forbidden", [(b"Content-Type", b"text/plain"), (b"Content-Length", b"10")], b"Forbidden\n")

_open: set = set()          # the accepted sessions' cycles (a graceful stop closes them)
_watching = False           # a once-a-second look at the worker's stop flag while sessions are open
STOP_CHECK = 1.0


def is_websocket(vars_: dict) -> bool:
    upgrade = vars_.get(b"HTTP_UPGRADE")
    return upgrade is not None and upgrade.lower() == b"websocket"


def websocket_scope(scope: dict, vars_: dict) -> dict:
    """The websocket scope from the HTTP one build_scope made (no method; ws/wss)."""
    del scope["method"]
    scope["type"] = "websocket"
    scope["scheme"] = "wss" if scope["scheme"] == "https" else "ws"
    offered = vars_.get(b"HTTP_SEC_WEBSOCKET_PROTOCOL", b"").decode("latin-1")
    scope["subprotocols"] = [p.strip() for p in offered.split(",") if p.strip()]
    scope["extensions"] = {"websocket.http.response": {}}
    return scope


def _frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n <= 0xFFFF:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


def _resolve(fut, ready: bool) -> None:
    if not fut.done():
        fut.set_result(ready)


class WebSocketCycle(HttpCycle):
    """HttpCycle's core side (the core parks until the app ends; a denial response is sent as
    an HTTP one), with the WebSocket messages."""

    __slots__ = ("session", "connected", "disconnected", "writing", "reading", "ping_timer")

    def __init__(self, req, driver, app):
        super().__init__(req, driver, app)
        self.session = None         # the server's websocket Session once accepted
        self.connected = False      # websocket.connect was given
        self.disconnected = False   # websocket.disconnect was given
        self.writing = None         # the asyncio.Lock that keeps concurrent sends' frames whole
        self.reading = False        # our reader is on the fd in asyncio's selector
        self.ping_timer = None      # wakes receive() when a ping (or the pong's deadline) is due

    # ---- what the app calls ---------------------------------------------------------------
    async def receive(self):
        if not self.connected:
            self.connected = True
            return _CONNECT
        s = self.session
        if s is None:
            if self.started or self.complete:
                return self._disconnect(CLOSE_LOST)
            raise RuntimeError("ASGI: receive() before websocket.accept (or websocket.close)")
        while True:
            if s.closed:
                return self._disconnect(s.close_code or CLOSE_LOST)
            try:
                data = s.recv(block=False)      # also answers pings and sends ours when due
            except OSError:
                return self._disconnect(s.close_code or CLOSE_LOST)
            if data is not None:
                if s.last_opcode == OP_TEXT:
                    return {"type": "websocket.receive", "text": data.decode("utf-8")}
                return {"type": "websocket.receive", "bytes": data}
            if not s.closed:
                await self._wait_readable(s)

    def _disconnect(self, code: int) -> dict:
        self.disconnected = True
        _open.discard(self)
        return {"type": "websocket.disconnect", "code": code}

    async def send(self, message):
        kind = message["type"]
        if kind == "websocket.send":
            s = self.session
            if s is None:
                raise RuntimeError("ASGI: websocket.send before websocket.accept")
            text = message.get("text")
            if text is not None:
                await self._write(_frame(OP_TEXT, text.encode("utf-8")))
                return
            data = message.get("bytes")
            if data is None:
                raise RuntimeError("ASGI websocket.send: neither 'bytes' nor 'text'")
            await self._write(_frame(OP_BINARY, bytes(data)))
            return
        if kind == "websocket.accept":
            self._accept(message)
            return
        if kind == "websocket.close":
            await self._close(message)
            return
        if kind in ("websocket.http.response.start", "websocket.http.response.body"):
            if self.session is not None:
                raise RuntimeError(f"ASGI: {kind} after websocket.accept")
            await HttpCycle.send(self, {**message, "type": kind[10:]})
            return
        raise RuntimeError(f"ASGI: unexpected message {kind!r} on a WebSocket connection")

    def _accept(self, message) -> None:
        if self.session is not None or self.started or self.complete:
            raise RuntimeError("ASGI: websocket.accept after the connection was accepted or refused")
        if self.gone or self.conn.closed:
            self._client_gone()
            raise ClientDisconnected("the client went away")
        headers = [(bytes(n), bytes(v)) for n, v in message.get("headers") or ()]
        proto = message.get("subprotocol")
        session = api.websocket_handshake(None, None, proto, headers=headers, req=self.req)
        self.session = session
        _open.add(self)
        global _watching
        if not _watching:
            _watching = True
            loop = self.driver.loop
            loop.call_later(STOP_CHECK, lambda: _watch_stop(loop))

    async def _close(self, message) -> None:
        s = self.session
        if s is None:
            if self.started:
                raise RuntimeError("ASGI: websocket.close after the denial response started")
            if not self.complete:       # refused before the handshake: a 403 (ASGI spec)
                status, headers, body = _FORBIDDEN
                self.req.start_response(status, headers)
                self.req.write(body)
                self.started = self.complete = True
                self._wake()
            return
        if s.closed:
            return
        code = message.get("code") or 1000
        if type(code) is not int or not (1000 <= code <= 4999) or code in (1004, 1005, 1006, 1015):
            raise RuntimeError(f"ASGI websocket.close: {code!r} is not a close code an endpoint may send")
        reason = (message.get("reason") or "").encode("utf-8")[:123]
        s.close_code = code
        try:
            await self._write(_frame(OP_CLOSE, struct.pack("!H", code) + reason))
        except OSError:
            pass
        s.closed = True
        _open.discard(self)

    # ---- writing and waiting on the asyncio loop ------------------------------------------
    async def _write(self, data: bytes) -> None:
        s = self.session
        lock = self.writing
        if lock is None:
            lock = self.writing = asyncio.Lock()
        async with lock:
            if s.closed:
                raise ClientDisconnected("the WebSocket is closed")
            if s.tls is not None:
                try:
                    data = s.tls.encrypt(data)
                except OSError:
                    s.closed = True
                    raise ClientDisconnected("the client went away") from None
            view = memoryview(data)
            while view:
                try:
                    view = view[os.write(s.fd, view):]
                    continue
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    s.closed = True
                    raise ClientDisconnected("the client went away") from None
                if not await self._wait(s.fd, True, s.send_timeout):
                    log(f"[asgi] {s.where}: the WebSocket client stopped reading for {s.send_timeout:g} s")
                    s.closed = True
                    raise ClientDisconnected("the client stopped reading")

    async def _wait_readable(self, s) -> None:
        """Until the client sent something, or the session's ping timer is due. The reader stays
        in asyncio's selector from one message to the next (no epoll_ctl per message); it leaves
        when it fires with nobody waiting (the app busy elsewhere: no busy loop on a readable
        fd). The ping timer is armed once per ping interval, not per message."""
        aloop = self.driver.aloop
        fut = self.gone_fut = aloop.create_future()     # a graceful stop ends the wait (_client_gone)
        if not self.reading:
            aloop.add_reader(s.fd, self._on_readable)
            self.reading = True
        if self.ping_timer is None:
            self.ping_timer = aloop.call_later(max(0.0, s._next_timer() - time.monotonic()) + 0.001,
                                               self._on_ping_timer)
        try:
            await fut
        finally:
            self.gone_fut = None

    def _on_readable(self) -> None:
        fut = self.gone_fut
        if fut is None:
            self._stop_reading()
        elif not fut.done():
            fut.set_result(True)

    def _on_ping_timer(self) -> None:
        self.ping_timer = None
        fut = self.gone_fut
        if fut is not None and not fut.done():
            fut.set_result(False)   # receive() looks: recv(block=False) pings when it is due

    def _stop_reading(self) -> None:
        if self.ping_timer is not None:
            self.ping_timer.cancel()
            self.ping_timer = None
        if self.reading:
            self.reading = False
            try:
                self.driver.aloop.remove_reader(self.session.fd)
            except (OSError, ValueError, RuntimeError):
                pass                # the loop or the fd is gone

    async def _wait(self, fd: int, write: bool, timeout: float) -> bool:
        """Until fd is writable, or False after timeout seconds."""
        aloop = self.driver.aloop
        fut = aloop.create_future()
        aloop.add_writer(fd, _resolve, fut, True)
        timer = aloop.call_later(timeout, _resolve, fut, False)
        try:
            return await fut
        finally:
            timer.cancel()
            try:
                aloop.remove_writer(fd)
            except (OSError, ValueError, RuntimeError):
                pass                # the fd went with the connection

    # ---- the core's side ------------------------------------------------------------------
    def _end(self) -> None:
        """The request leaves its core (the connection closes next): our reader goes first."""
        if self.session is not None:
            self._stop_reading()
        super()._end()

    def _ended(self, task) -> None:
        s = self.session
        if s is None:
            if not self.started and not task.cancelled() and task.exception() is None:
                status, headers, body = _FORBIDDEN     # returned without accepting: refused
                self.req.start_response(status, headers)
                self.req.write(body)
                return
            super()._ended(task)
            return
        _open.discard(self)
        exc = None if task.cancelled() else task.exception()
        if exc is not None and not isinstance(exc, ClientDisconnected):
            self._count_exception()
            log(f"[asgi] error in the app's WebSocket session ({self._where()})\n{user_traceback(exc)}")
            if not s.closed:
                s._end(CLOSE_INTERNAL)
        elif not s.closed:
            s._end(1000)        # the app returned with the session open: close it properly


def _watch_stop(loop) -> None:
    """A graceful stop waits for the cores' requests to end: the sessions must end first."""
    global _watching
    w = api.worker
    if w is not None and w.stopping:
        going_away()
    if _open:
        loop.call_later(STOP_CHECK, lambda: _watch_stop(loop))
    else:
        _watching = False


def going_away() -> None:
    """A graceful stop: open sessions close with 1001, so that the apps' receive loops end."""
    for cycle in list(_open):
        s = cycle.session
        _open.discard(cycle)
        if s is not None and not s.closed:
            s._end(CLOSE_GOING_AWAY)
            cycle._client_gone()


def serve_websocket(req, driver, app, scope: dict):
    """serve() for an Upgrade: websocket request."""
    cycle = WebSocketCycle(req, driver, app)
    return start(cycle, driver, app.callable(scope, cycle.receive, cycle.send))
