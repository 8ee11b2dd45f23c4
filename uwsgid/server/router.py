"""The --http router: a process (forked and respawned by the master) that speaks HTTP/1.1 to
clients (keep-alive, pipelining, chunked request bodies, Expect: 100-continue) and forwards
each request to the workers over the uwsgi protocol (one backend connection per request),
streaming the response back.

The workers answer over uwsgi with a raw HTTP response. When it carries no Content-Length and
is not chunked, its end is the backend closing: the router then re-frames it as chunked for an
HTTP/1.1 client (the client connection stays alive) or closes the client connection after it
(HTTP/1.0). Not the benchmarks' hot path: a thread per client connection keeps it simple.

The listening sockets are bound in the master (bind()) so that they survive reloads and router
respawns: clients queue in the backlog meanwhile.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import threading

import httptools

from uwsgid.net import sockets
from uwsgid.net.packet import build_packet
from uwsgid.net.protocols import unquote_to_bytes
from uwsgid.server import reexec
from uwsgid.util.log import log, log_exception

MAX_HEAD = 65536
IDLE_TIMEOUT = 60.0      # an idle keep-alive client is closed after this
MAX_CLIENTS = 1024


# ---- binding (in the master) ---------------------------------------------------------------

def bind(opts) -> list[tuple[socket.socket, str]]:
    """Bind every --http ADDR (adopting the fds a reloading master passed); [(sock, addr)]."""
    inherited = reexec.inherited_router_sockets()
    out = []
    try:
        for addr in opts.http:
            addr = sockets.resolve_shared(addr, opts)     # --http =N: a --shared-socket
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


# ---- the router process --------------------------------------------------------------------

class _Request:
    __slots__ = ("method", "url", "headers", "body", "version", "keep_alive", "expect_continue")

    def __init__(self):
        self.method = b"GET"
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.version = "1.1"
        self.keep_alive = True
        self.expect_continue = False


class BadRequest(Exception):
    def __init__(self, status: str, msg: str):
        super().__init__(msg)
        self.status = status


class _Parser:
    """httptools callbacks collecting complete requests (pipelined ones queue up in order)."""

    def __init__(self, conn: "ClientConnection"):
        self.conn = conn
        self.cur: _Request | None = None
        self.done: list[_Request] = []
        self.body_size = 0
        self.head_size = 0
        self.error: BadRequest | None = None    # httptools wraps callback exceptions: keep ours
        self.p = httptools.HttpRequestParser(self)

    def _fail(self, status: str, msg: str):
        self.error = BadRequest(status, msg)
        raise self.error

    def on_message_begin(self):
        self.cur = _Request()
        self.body_size = 0
        self.head_size = 0

    def on_url(self, url: bytes):
        self.cur.url += url
        if len(self.cur.url) > MAX_HEAD:
            self._fail("414 URI Too Long", "uri too long")

    def on_header(self, name: bytes, value: bytes):
        self.cur.headers.append((name, value))
        self.head_size += len(name) + len(value) + 4
        if self.head_size > MAX_HEAD:
            self._fail("431 Request Header Fields Too Large", "request headers too large")

    def on_headers_complete(self):
        r = self.cur
        r.method = self.p.get_method()
        r.version = self.p.get_http_version()
        r.keep_alive = self.p.should_keep_alive()
        limit = self.conn.router.limit_post
        for name, value in r.headers:
            lname = name.lower()
            if lname == b"expect" and value.lower() == b"100-continue":
                r.expect_continue = True
            elif lname == b"content-length" and limit and value.strip().isdigit() and int(value) > limit:
                self._fail("413 Request Entity Too Large", "request body over --limit-post")
        if r.expect_continue and not self.done:
            self.conn.send_continue(r)

    def on_body(self, body: bytes):
        self.body_size += len(body)
        limit = self.conn.router.limit_post
        if limit and self.body_size > limit:
            self._fail("413 Request Entity Too Large", "request body over --limit-post")
        self.cur.body.append(body)

    def on_message_complete(self):
        self.done.append(self.cur)
        self.cur = None


class ClientConnection:
    def __init__(self, router: "Router", sock: socket.socket, addr, server_addr):
        self.router = router
        self.sock = sock
        self.addr = addr
        self.server_addr = server_addr
        self.busy = False
        self.served = 0

    def send_continue(self, req: _Request) -> None:
        if req.version == "1.1":
            self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

    def close_if_idle(self) -> None:
        """Graceful stop: wake a thread blocked waiting for the next keep-alive request. A new
        connection whose first request has not arrived yet is served, not dropped."""
        if not self.busy and self.served:
            try:
                self.sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass

    def serve(self) -> None:
        parser = _Parser(self)
        sock = self.sock
        timeout = max(1, int(self.router.opts.socket_timeout or 4))
        try:
            while True:
                sock.settimeout(IDLE_TIMEOUT if parser.cur is None and self.served else timeout)
                try:
                    data = sock.recv(65536)
                except socket.timeout:
                    if parser.cur is not None or not self.served:
                        log(f"[uwsgi-http] client {self.addr}: request timed out after {timeout}s")
                        self._error("408 Request Timeout", "request timeout")
                    return
                if not data:
                    return
                self.busy = True
                try:
                    parser.p.feed_data(data)
                except httptools.HttpParserUpgrade:
                    self._error("501 Not Implemented", "protocol upgrade is not supported")
                    return
                except (BadRequest, httptools.HttpParserError) as e:
                    if parser.error is not None:
                        self._error(parser.error.status, str(parser.error))
                    else:
                        self._error("400 Bad Request", f"bad request: {e}")
                    return
                while parser.done:
                    req = parser.done.pop(0)
                    self.served += 1
                    if not self._forward(req) or not req.keep_alive or self.router.stopping:
                        return
                self.busy = parser.cur is not None     # a partial request is not idle
                if self.router.stopping and parser.cur is None:
                    return
        except OSError:
            return
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def _error(self, status: str, msg: str) -> None:
        body = f"{msg}\n".encode()
        try:
            self.sock.sendall(f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}"
                              f"\r\nConnection: close\r\n\r\n".encode() + body)
        except OSError:
            pass

    def _vars(self, req: _Request, body_len: int) -> dict:
        path, _, query = req.url.partition(b"?")
        path = path.partition(b"#")[0]
        if path.startswith((b"http://", b"https://")):   # absolute-form
            path = b"/" + path.split(b"/", 3)[3] if path.count(b"/") >= 3 else b"/"
        saddr = self.server_addr
        v = {
            b"REQUEST_METHOD": req.method,
            b"REQUEST_URI": req.url,
            b"PATH_INFO": unquote_to_bytes(path),
            b"QUERY_STRING": query,
            b"SERVER_PROTOCOL": f"HTTP/{req.version}".encode(),
            b"SCRIPT_NAME": b"",
            b"SERVER_NAME": str(saddr[0] if isinstance(saddr, tuple) else "localhost").encode(),
            b"SERVER_PORT": str(saddr[1] if isinstance(saddr, tuple) else 0).encode(),
            b"REMOTE_ADDR": str(self.addr[0] if isinstance(self.addr, tuple) else "").encode(),
            b"REMOTE_PORT": str(self.addr[1] if isinstance(self.addr, tuple) else 0).encode(),
            b"UWSGI_ROUTER": b"http",
        }
        for name, value in req.headers:
            key = name.upper().replace(b"-", b"_")
            if key == b"CONTENT_TYPE":
                v[b"CONTENT_TYPE"] = value
                continue
            if key in (b"CONTENT_LENGTH", b"TRANSFER_ENCODING"):
                continue    # the body is re-framed: CONTENT_LENGTH below
            k = b"HTTP_" + key
            v[k] = v[k] + b", " + value if k in v else value
        if b"HTTP_HOST" in v:
            host = v[b"HTTP_HOST"].rsplit(b":", 1)[0] if not v[b"HTTP_HOST"].endswith(b"]") else v[b"HTTP_HOST"]
            v[b"SERVER_NAME"] = host
        if body_len or req.method in (b"POST", b"PUT", b"PATCH"):
            v[b"CONTENT_LENGTH"] = str(body_len).encode()
        return v

    def _forward(self, req: _Request) -> bool:
        """Send one request to a worker and stream its response back; True to keep the client."""
        body = b"".join(req.body)
        router = self.router
        try:
            packet = build_packet(router.modifier1, self._vars(req, len(body)), router.modifier2)
        except Exception as e:
            self._error("400 Bad Request", f"cannot encode request: {e}")
            return False
        try:
            backend = socket.socket(router.backend_family, socket.SOCK_STREAM)
            backend.settimeout(10)
            backend.connect(router.backend_addr)
            backend.settimeout(None)
            backend.sendall(packet + body)
        except OSError as e:
            log(f"[uwsgi-http] cannot reach the workers at {router.backend_name}: {e.strerror or e}")
            self._error("502 Bad Gateway", "the application server is not available")
            return False
        try:
            return self._relay(req, backend)
        finally:
            backend.close()

    def _relay(self, req: _Request, backend: socket.socket) -> bool:
        head = b""
        while b"\r\n\r\n" not in head:
            try:
                chunk = backend.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                if not head:
                    log(f"[uwsgi-http] empty response from the workers for {req.method.decode()} "
                        f"{req.url.decode('latin-1')}")
                self._error("502 Bad Gateway", "invalid response from the application")
                return False
            head += chunk
            if len(head) > MAX_HEAD and b"\r\n\r\n" not in head:
                self._error("502 Bad Gateway", "response headers too large")
                return False
        head, _, rest = head.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status_line = lines[0]
        parts = status_line.split(b" ", 2)
        try:
            status = int(parts[1])
        except (IndexError, ValueError):
            self._error("502 Bad Gateway", "invalid response from the application")
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
        no_body = req.method == b"HEAD" or status in (204, 304) or 100 <= status < 200
        keep = req.keep_alive and self.router.keepalive and not self.router.stopping
        reframe = False
        if not no_body and length is None and not chunked:
            if keep and req.version == "1.1":
                headers.append(b"Transfer-Encoding: chunked")
                reframe = True
            else:
                keep = False
        headers.append(b"Connection: keep-alive" if keep else b"Connection: close")
        if status_line.startswith(b"HTTP/1.0 ") and req.version == "1.1":
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


class Router:
    def __init__(self, server):
        self.server = server
        self.opts = server.opts
        self.sockets = server.router_sockets
        self.modifier1 = int(self.opts.http_modifier1 or 0)
        self.modifier2 = int(self.opts.http_modifier2 or 0)
        self.limit_post = int(self.opts.limit_post or 0)
        self.keepalive = bool(int(self.opts.http_keepalive if self.opts.http_keepalive is not None else 1))
        self.stopping = False
        self.clients: set[ClientConnection] = set()
        self.lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(MAX_CLIENTS)
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
            client = ClientConnection(self, conn, addr, lsock.getsockname())
            with self.lock:
                self.clients.add(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: ClientConnection) -> None:
        try:
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
