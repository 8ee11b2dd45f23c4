"""The --http router: a process (forked and respawned by the master) that speaks HTTP/1.1 to
clients (keep-alive, pipelining, chunked request bodies, Expect: 100-continue) and forwards
each request to the workers over the uwsgi protocol (one backend connection per request),
streaming the response back.

Requests are parsed by the workers' own HTTP parser (net/protocols/http.py, as on an
--http-socket): the same limits (--buffer-size, --limit-post, --max-vars), the same refusals
and log lines (tagged "[uwsgi-http]"), the same CGI vars (SERVER_NAME is the host name, as
uWSGI's router sets it). The router only adds UWSGI_ROUTER and gives a chunked body, read
whole, its CONTENT_LENGTH; the rest of this module is the relay.

The workers answer over uwsgi with a raw HTTP response. When it carries no Content-Length and
is not chunked, its end is the backend closing: the router then re-frames it as chunked for an
HTTP/1.1 client (the client connection stays alive) or closes the client connection after it
(HTTP/1.0). Not the benchmarks' hot path: a thread per client connection keeps it simple.

Timeouts are uWSGI's (--http-timeout, 60 s, for every read and write; --http-headers-timeout
and --http-connect-timeout default to it; --http-keepalive N > 1 is the idle time between a
client's requests). Where uWSGI's router just closes the client connection, this one answers
when nothing was sent yet: 408 to a client whose head does not come, 504 when the workers do
not answer; a response stalled midway is cut (no last chunk), as in uWSGI.

With --http-websockets (uWSGI's option; without it uWSGI's router does not relay either), a
WebSocket upgrade answered 101 by the workers is passed through unchanged and the two
connections are spliced (server/splice.py) until either side closes.

The listening sockets are bound in the master (bind()) so that they survive reloads and router
respawns: clients queue in the backlog meanwhile.
"""

from __future__ import annotations

import io
import os
import selectors
import signal
import socket
import threading
import time
from collections import deque

from uwsgid.net import sockets
from uwsgid.net.connection import error_reply
from uwsgid.net.packet import PacketError, build_packet
from uwsgid.net.protocols import Limits, keepalive_seconds, reject, set_reject_tag
from uwsgid.net.protocols.http import HttpParser
from uwsgid.net.request import Request
from uwsgid.server import reexec
from uwsgid.server.splice import is_websocket_upgrade, splice
from uwsgid.util.log import log, log_exception

MAX_HEAD = 65536         # a worker's response head (the requests' limits are the workers')
LINGER = 2.0             # seconds to drain a client after an error reply
MAX_CLIENTS = 1024


# ---- binding (in the master) ---------------------------------------------------------------

def bind(opts) -> list[tuple[socket.socket, str]]:
    """Bind every --http ADDR (adopting the fds a reloading master passed); [(sock, addr)]."""
    for name in ("http-timeout", "http-headers-timeout", "http-connect-timeout"):
        if int(getattr(opts, name.replace("-", "_")) or 0) < 0:
            raise ValueError(f"--{name} {getattr(opts, name.replace('-', '_'))}: expected seconds (0 = the default)")
    keepalive_seconds(opts.http_keepalive)      # a bad value stops the start here, not in the router
    wanted = [(addr, None) for addr in opts.http or ()] + _https(opts)
    inherited = reexec.inherited_router_sockets()
    out = []
    try:
        for addr, ctx in wanted:
            addr = sockets.resolve_shared(addr, opts)     # --http =N: a --shared-socket
            if ctx is not None:
                TLS_CONTEXTS[addr] = ctx
            fd = inherited.pop(addr, None)
            if fd is not None:
                s = socket.socket(fileno=fd)
                os.set_inheritable(fd, False)
            else:
                s = sockets.bind_address(addr, opts, "http").sock
            s.setblocking(False)
            out.append((s, addr))
    except Exception as e:
        for s, _ in out:
            s.close()
        raise OSError(str(e)) from None
    finally:
        for fd in inherited.values():
            try:
                os.close(fd)
            except OSError:
                pass
    return out


TLS_CONTEXTS: dict = {}     # --https ADDR -> its ssl.SSLContext (made in the master before fork)


def _https(opts) -> list:
    """(addr, context) for every --https ADDR,CERT,KEY[,CIPHERS[,CA]] (ssl imported only then)."""
    if not opts.https:
        return []
    from uwsgid.net import tls
    try:
        sni = tls.Sni(opts.sni)
        out = []
        for spec in opts.https:
            addr, cert, key, ciphers, ca = tls.parse_spec(spec, "https")
            ctx = tls.make_context(cert, key, ciphers, ca, where=f"--https {addr}")
            sni.attach(ctx)
            out.append((addr, ctx))
    except tls.TlsConfigError as e:
        raise ValueError(str(e)) from None
    return out


# ---- the router process --------------------------------------------------------------------

class _Side:
    """What the HTTP parser needs to know of the socket a client came in on (as a worker's
    listener): the modifiers the requests are forwarded with and the port (SERVER_PORT)."""

    __slots__ = ("modifier1", "modifier2", "port", "tls")

    def __init__(self, modifier1: int, modifier2: int, addr, tls=None):
        self.modifier1 = modifier1
        self.modifier2 = modifier2
        self.port = addr[1] if isinstance(addr, tuple) else 0
        self.tls = tls              # the --https context: the parser then sets HTTPS=on


class ClientConnection:
    """One client, served by one thread: the requests are parsed by the same HttpParser as a
    worker's --http-socket (so the same limits, errors and CGI vars), then relayed."""

    def __init__(self, router: "Router", sock: socket.socket, addr, side: _Side):
        self.router = router
        self.sock = sock
        self.addr = addr
        self.fd = sock.fileno()
        self.queue: deque = deque()
        self.peer = f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else (addr or "unix")
        self.busy = False
        self.served = 0
        remote = (addr[0].encode(), b"%d" % addr[1]) if isinstance(addr, tuple) else (b"", b"")
        self.parser = HttpParser(self, side, router.limits, remote[0], remote[1])
        self.tls = side.tls

    def start_tls(self, timeout: float) -> bool:
        """--https: the TLS handshake, in this client's thread (the relay then reads and writes
        through the ssl socket as through the plain one). False: failed, logged, closed."""
        from uwsgid.net.tls import describe_error
        try:
            self.sock.settimeout(timeout)
            self.sock = self.tls.wrap_socket(self.sock, server_side=True)
            return True
        except OSError as e:          # ssl.SSLError included
            reject(0, self.peer, f"TLS handshake failed: {describe_error(e)}")
            try:
                self.sock.close()
            except OSError:
                pass
            return False

    def send(self, data: bytes) -> None:
        """The parser's interim replies (100 Continue)."""
        try:
            self.sock.sendall(data)
        except OSError:
            pass

    def close_if_idle(self) -> None:
        """Graceful stop: wake a thread blocked waiting for the next keep-alive request. A new
        connection whose first request has not arrived yet is served, not dropped."""
        if not self.busy and self.served:
            try:
                self.sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass

    def serve(self) -> None:
        parser = self.parser
        sock = self.sock
        queue = self.queue
        router = self.router
        try:
            while True:
                partial = parser.partial
                if not partial and self.served:
                    timeout, what = router.idle_timeout, None     # between keep-alive requests
                elif parser.body is not None:
                    timeout, what = router.http_timeout, "--http-timeout"   # a request body
                else:
                    timeout, what = router.headers_timeout, "--http-headers-timeout"
                sock.settimeout(timeout)
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    if what is not None:
                        err = reject(408, self.peer, f"no complete request in {timeout:g}s ({what})")
                        self._error(err.status, err.reason)
                    return
                if not data:
                    return
                self.busy = True
                parser.feed(data)
                while queue:
                    req = queue.popleft()
                    self.served += 1
                    if not self._forward(req) or not req.keepalive or self.router.stopping:
                        return
                err = parser.error
                if err is not None:
                    self._error(err.status, err.reason, err.body)
                    return
                if parser.upgraded:
                    return
                self.busy = parser.partial     # a partial request is not idle
                if self.router.stopping and not self.busy:
                    return
        except OSError:
            return
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def _error(self, status: int, reason: str, text: str = "") -> None:
        """Answer an error, then half-close and drain what the client still sends for a while
        (as a worker's connection does), so that the kernel does not reset the connection and
        lose the answer on unread data."""
        sock = self.sock
        try:
            sock.sendall(error_reply(status, reason, text))
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(LINGER)
            deadline = time.monotonic() + LINGER
            while sock.recv(65536) and time.monotonic() < deadline:
                pass
        except OSError:
            pass

    def _vars(self, req: Request) -> dict:
        """The worker's vars for a request: the parser's, with the body re-framed (a chunked
        body was read whole: it goes on with its length)."""
        v = dict(req.vars)
        if req.input_terminated:
            v.pop(b"HTTP_TRANSFER_ENCODING", None)
            v[b"CONTENT_LENGTH"] = b"%d" % req.post_cl
        v[b"UWSGI_ROUTER"] = b"http"
        return v

    def _forward(self, req: Request) -> bool:
        """Send one request to a worker and stream its response back; True to keep the client."""
        router = self.router
        try:
            packet = build_packet(req.modifier1, self._vars(req), req.modifier2)
        except PacketError as e:
            err = reject(431, self.peer, f"request vars cannot be sent to the workers: {e}")
            self._error(err.status, err.reason)
            return False
        if len(packet) - 4 > router.limits.buffer_size:
            err = reject(431, self.peer, f"request vars of {len(packet) - 4} bytes over the workers' "
                                         f"--buffer-size {router.limits.buffer_size}")
            self._error(err.status, err.reason)
            return False
        body = req.input
        self.sock.settimeout(router.http_timeout)   # writing to a client that does not read
        try:
            backend = socket.socket(router.backend_family, socket.SOCK_STREAM)
            backend.settimeout(router.connect_timeout)
            try:
                backend.connect(router.backend_addr)
            except TimeoutError:
                raise OSError(f"no connection in {router.connect_timeout:g}s (--http-connect-timeout)") from None
            backend.settimeout(router.http_timeout)
            if isinstance(body, io.BytesIO):
                backend.sendall(packet + body.getvalue())
            else:
                backend.sendall(packet)
                while chunk := body.read(65536):
                    backend.sendall(chunk)
        except OSError as e:
            err = reject(502, self.peer, f"cannot reach the workers at {router.backend_name}: {e.strerror or e}")
            self._error(err.status, "Bad Gateway", "the application server is not available")
            return False
        try:
            return self._relay(req, backend)
        finally:
            backend.close()

    def _relay(self, req: Request, backend: socket.socket) -> bool:
        head = b""
        while b"\r\n\r\n" not in head:
            try:
                chunk = backend.recv(65536)
            except TimeoutError:
                self._backend_timeout(req, "no response")
                self._error(504, "Gateway Timeout", "the application did not answer in time")
                return False
            except OSError:
                chunk = b""
            if not chunk:
                uri = req.vars[b"REQUEST_URI"].decode("latin-1")
                reject(502, self.peer, f"{'empty' if not head else 'truncated'} response from the workers "
                                       f"for {req.method.decode('latin-1')} {uri}")
                self._error(502, "Bad Gateway", "invalid response from the application")
                return False
            head += chunk
            if len(head) > MAX_HEAD and b"\r\n\r\n" not in head:
                reject(502, self.peer, f"response head from the workers over {MAX_HEAD} bytes")
                self._error(502, "Bad Gateway", "response headers too large")
                return False
        head, _, rest = head.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status_line = lines[0]
        parts = status_line.split(b" ", 2)
        try:
            status = int(parts[1])
        except (IndexError, ValueError):
            reject(502, self.peer, f"invalid status line from the workers: {status_line[:80]!r}")
            self._error(502, "Bad Gateway", "invalid response from the application")
            return False
        headers = []
        length = None
        chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            lname = name.strip().lower()
            if lname in (b"connection", b"keep-alive"):
                continue
            if lname == b"content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    length = None
            elif lname == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            headers.append(line)
        if status == 101:
            return self._switch(req, head, rest, backend)
        no_body = req.method == b"HEAD" or status in (204, 304) or 100 <= status < 200
        keep = req.keepalive and not self.router.stopping
        reframe = False
        if not no_body and length is None and not chunked:
            if keep and req.http11:
                headers.append(b"Transfer-Encoding: chunked")
                reframe = True
            else:
                keep = False
        headers.append(b"Connection: keep-alive" if keep else b"Connection: close")
        if status_line.startswith(b"HTTP/1.0 ") and req.http11:
            status_line = b"HTTP/1.1 " + status_line[9:]
        out = status_line + b"\r\n" + b"\r\n".join(headers) + b"\r\n\r\n"
        if no_body:
            self.sock.sendall(out)
            return keep
        sent = 0
        if rest:
            if reframe:
                out += b"%x\r\n%s\r\n" % (len(rest), rest)
            else:
                out += rest if length is None else rest[:length]
            sent += len(rest)
        self.sock.sendall(out)
        while length is None or sent < length:
            try:
                chunk = backend.recv(65536)
            except TimeoutError:
                self._backend_timeout(req, "response stalled")
                return False      # closing shows the truncation (no last chunk)
            except OSError:
                chunk = b""
            if not chunk:
                break
            sent += len(chunk)
            if reframe:
                self.sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            else:
                self.sock.sendall(chunk)
        if length is not None and sent < length:
            return False          # truncated by the app: the close makes it visible
        if reframe:
            self.sock.sendall(b"0\r\n\r\n")
        if chunked and not reframe:
            return False          # we cannot tell where a passed-through chunked body ended cleanly
        return keep


    def _switch(self, req: Request, head: bytes, rest: bytes, backend: socket.socket) -> bool:
        """The workers switched protocols (101). With --http-websockets, a WebSocket upgrade is
        relayed as uWSGI's router does in raw mode: the 101 unchanged, then the bytes both ways
        until a side closes. Otherwise (uWSGI's default too) the session cannot go on: the 101
        goes out, closing, and one line says which option is missing. False: never kept."""
        if not (self.router.websockets and is_websocket_upgrade(req.vars)):
            uri = req.vars[b"REQUEST_URI"].decode("latin-1")
            log(f"[uwsgi-http] {self.peer}: the workers switched protocols for {uri}: the router relays "
                f"WebSocket sessions only with --http-websockets; connection closed")
            lines = [line for line in head.split(b"\r\n")
                     if line.partition(b":")[0].strip().lower() not in (b"connection", b"keep-alive")]
            self.sock.sendall(b"\r\n".join(lines) + b"\r\nConnection: close\r\n\r\n")
            return False
        self.sock.sendall(head + b"\r\n\r\n")
        router = self.router
        splice(self.sock, backend, self.parser.tail, rest, router.http_timeout, lambda: router.stopping)
        return False

    def _backend_timeout(self, req: Request, what: str) -> None:
        uri = req.vars[b"REQUEST_URI"].decode("latin-1")
        reject(504, self.peer, f"{what} from the workers in {self.router.http_timeout:g}s (--http-timeout) "
                               f"for {req.method.decode('latin-1')} {uri}")


class Router:
    def __init__(self, server):
        self.server = server
        self.opts = server.opts
        self.sockets = server.router_sockets
        self.modifier1 = int(self.opts.http_modifier1 or 0)
        self.modifier2 = int(self.opts.http_modifier2 or 0)
        # the workers' limits (--buffer-size, --limit-post, --http-keepalive ...): what passes
        # here passes there
        self.limits = Limits.from_opts(self.opts)
        # uWSGI's corerouter timeouts: --http-timeout (60) for I/O, the head and connect timeouts
        # default to it, and --http-keepalive N > 1 is the idle time between requests
        opts = self.opts
        self.http_timeout = float(opts.http_timeout or 60)
        self.headers_timeout = float(opts.http_headers_timeout or self.http_timeout)
        self.connect_timeout = float(opts.http_connect_timeout or self.http_timeout)
        keep = keepalive_seconds(opts.http_keepalive)
        self.idle_timeout = float(keep) if keep > 1 else self.http_timeout
        self.websockets = bool(opts.http_websockets)
        self.stopping = False
        self.clients: set[ClientConnection] = set()
        self.lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self.tls = {s: TLS_CONTEXTS.get(addr) for s, addr in self.sockets}
        self._backend()

    def _backend(self) -> None:
        uwsgi = [lst for lst in self.server.listeners if lst.proto == "uwsgi"]
        if not uwsgi:
            raise RuntimeError("--http needs a uwsgi socket for its workers (none bound)")
        lst = next((l for l in uwsgi if getattr(l, "internal", False)), uwsgi[0])
        self.backend_family = lst.sock.family
        addr = lst.sock.getsockname()
        if lst.sock.family == socket.AF_INET and addr[0] == "0.0.0.0":
            addr = ("127.0.0.1", addr[1])
        elif lst.sock.family == socket.AF_INET6 and addr[0] == "::":
            addr = ("::1", addr[1])
        self.backend_addr = addr
        self.backend_name = getattr(lst, "name", str(addr))

    def run(self) -> int:
        set_reject_tag("[uwsgi-http] ")
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT):
            signal.signal(sig, lambda s, f: None)
        sel = selectors.DefaultSelector()
        sel.register(r, selectors.EVENT_READ, None)
        for s, _ in self.sockets:
            sel.register(s, selectors.EVENT_READ, s)
        # the workers' listening sockets are not ours to serve
        for lst in self.server.listeners:
            try:
                lst.sock.close()
            except OSError:
                pass
        while not self.stopping:
            for key, _ in sel.select(1.0):
                if key.data is None:
                    for signum in os.read(r, 256):
                        if signum in (signal.SIGINT, signal.SIGQUIT):
                            os._exit(0)
                        self.stopping = True
                else:
                    self._accept(key.data)
        for s, _ in self.sockets:
            sel.unregister(s)
            s.close()        # the master keeps its copy: new clients wait in the backlog
        with self.lock:
            for c in list(self.clients):
                c.close_if_idle()
        for t in [t for t in threading.enumerate() if t is not threading.current_thread()]:
            t.join()
        return 0

    def _accept(self, lsock: socket.socket) -> None:
        for _ in range(64):
            try:
                conn, addr = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log(f"[uwsgi-http] accept(): {e.strerror or e}")
                return
            if not self.slots.acquire(blocking=False):
                conn.close()
                continue
            conn.setblocking(True)
            if conn.family in (socket.AF_INET, socket.AF_INET6):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            ctx = self.tls.get(lsock)
            side = _Side(self.modifier1, self.modifier2, lsock.getsockname(), ctx)
            client = ClientConnection(self, conn, addr, side)
            with self.lock:
                self.clients.add(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: ClientConnection) -> None:
        try:
            if client.tls is not None and not client.start_tls(self.headers_timeout):
                return
            client.serve()
        except Exception:
            log_exception("[uwsgi-http] connection failed:")
        finally:
            with self.lock:
                self.clients.discard(client)
            self.slots.release()


def run(server) -> int:
    """The router process body (forked by the master)."""
    try:
        return Router(server).run()
    except RuntimeError as e:
        log(f"uwsgi: {e}")
        return 1
