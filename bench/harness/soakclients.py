"""The soak's well-behaved clients: one request over HTTP or the uwsgi protocol, its outcome
classified (answered right, timeout, reset, closed early, refused, wrong status, wrong body),
and open-loop streams of them at a fixed rate.

Plain blocking sockets, so every failure is seen as the socket saw it: a connection reset is a
reset, a close before the answer is a close, a silence past the timeout is a timeout. Each
outcome keeps the client's local port: the soak matches it against the connections a killed
worker held.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from dataclasses import dataclass


def uwsgi_packet(modifier1: int, vars: dict[bytes, bytes], modifier2: int = 0) -> bytes:
    """A uwsgi request packet: 4-byte header (modifier1, vars size little-endian, modifier2), vars."""
    body = b"".join(struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v for k, v in vars.items())
    return struct.pack("<BHB", modifier1, len(body), modifier2) + body


def uwsgi_vars(path: str, method: str = "GET", body: bytes = b"") -> dict[bytes, bytes]:
    """What nginx's uwsgi_params sends (plus SCRIPT_NAME "", which pippo.lua needs under uWSGI)."""
    v = {b"REQUEST_METHOD": method.encode(), b"REQUEST_URI": path.encode(), b"PATH_INFO": path.encode(),
         b"QUERY_STRING": b"", b"SCRIPT_NAME": b"", b"SERVER_PROTOCOL": b"HTTP/1.1",
         b"SERVER_NAME": b"soak", b"SERVER_PORT": b"80", b"REMOTE_ADDR": b"127.0.0.1",
         b"REMOTE_PORT": b"40000", b"HTTP_HOST": b"soak"}
    if body:
        v[b"CONTENT_LENGTH"] = str(len(body)).encode()
        v[b"CONTENT_TYPE"] = b"application/octet-stream"
    return v


@dataclass
class Outcome:
    stream: str
    t0: float                  # monotonic, when the request started (connect included)
    t1: float = 0.0            # when it ended
    ok: bool = False
    why: str = ""              # "" when ok; else timeout | reset | closed | refused | status | body | error
    detail: str = ""
    port: int | None = None    # the client's local port of the connection that carried it
    retried: bool = False      # a kept-alive connection was found closed: sent again on a new one
    stale_port: int | None = None   # the port of that stale connection


class Failure(Exception):
    def __init__(self, why: str, detail: str = "", got_bytes: int = 0):
        super().__init__(f"{why}: {detail}")
        self.why, self.detail, self.got_bytes = why, detail, got_bytes


def _classify(exc: BaseException, got: int = 0) -> Failure:
    if isinstance(exc, Failure):
        return exc
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return Failure("timeout", str(exc) or "no answer in time", got)
    if isinstance(exc, ConnectionRefusedError):
        return Failure("refused", str(exc), got)
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return Failure("reset", f"{type(exc).__name__}", got)
    return Failure("error", f"{type(exc).__name__}: {exc}", got)


class Reader:
    """Reads one HTTP/1.x response from a blocking socket (Content-Length, chunked, or to EOF)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""
        self.got = 0

    deadline: float | None = None

    def _more(self) -> bool:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("the request's deadline passed")
            self.sock.settimeout(left)
        chunk = self.sock.recv(65536)
        self.got += len(chunk)
        self.buf += chunk
        return bool(chunk)

    def response(self, head_request: bool = False) -> tuple[int, dict[bytes, bytes], bytes, bool]:
        """(status, headers lower-cased, body, server will close)."""
        while b"\r\n\r\n" not in self.buf:
            if not self._more():
                raise Failure("closed", "closed before an answer" if not self.got else
                              f"closed in the head after {self.got} bytes", self.got)
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise Failure("status", f"not an HTTP status line: {lines[0][:60]!r}", self.got)
        status = int(parts[1])
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower()] = v.strip()
        close = headers.get(b"connection", b"").lower() == b"close" or parts[0] == b"HTTP/1.0"
        if head_request or status in (204, 304) or 100 <= status < 200:
            return status, headers, b"", close
        if b"content-length" in headers:
            n = int(headers[b"content-length"])
            while len(self.buf) < n:
                if not self._more():
                    raise Failure("closed", f"closed after {len(self.buf)} of {n} body bytes", self.got)
            body, self.buf = self.buf[:n], self.buf[n:]
            return status, headers, body, close
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            body = b""
            while True:
                while b"\r\n" not in self.buf:
                    if not self._more():
                        raise Failure("closed", "closed inside a chunked body", self.got)
                line, _, self.buf = self.buf.partition(b"\r\n")
                size = int(line.split(b";")[0].strip() or b"0", 16)
                while len(self.buf) < size + 2:
                    if not self._more():
                        raise Failure("closed", "closed inside a chunk", self.got)
                if size == 0:
                    # trailers end with an empty line
                    while not self.buf.startswith(b"\r\n") and b"\r\n\r\n" not in self.buf:
                        if not self._more():
                            break
                    self.buf = self.buf.split(b"\r\n", 1)[1] if self.buf.startswith(b"\r\n") else \
                        self.buf.split(b"\r\n\r\n", 1)[-1]
                    return status, headers, body, close
                body += self.buf[:size]
                self.buf = self.buf[size + 2:]
        while self._more():      # framed by closing the connection (uWSGI's --http-socket does this)
            pass
        body, self.buf = self.buf, b""
        return status, headers, body, True


def _connect(addr, timeout: float) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(addr)
    except BaseException:
        s.close()
        raise
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


@dataclass
class Kind:
    """One kind of request: how it is sent and what the right answer is."""
    name: str
    proto: str                         # "http" | "uwsgi"
    keepalive: bool = False
    method: str = "GET"
    body: bytes = b""
    modifier1: int = 0
    expect: bytes = b"Hello World"     # the exact body, or with echo_path a part of it
    echo_path: bool = False            # the body must repeat PATH_INFO (pippo.lua does)


class Client:
    """One client thread's connection state for one Kind (a kept-alive socket, if any)."""

    def __init__(self, kind: Kind, host: str, port: int, timeout: float):
        self.kind, self.addr, self.timeout = kind, (host, port), timeout
        self.sock: socket.socket | None = None
        self.reader: Reader | None = None

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = self.reader = None

    def _request_bytes(self, path: str) -> bytes:
        k = self.kind
        if k.proto == "uwsgi":
            return uwsgi_packet(k.modifier1, uwsgi_vars(path, k.method, k.body)) + k.body
        head = [f"{k.method} {path} HTTP/1.1", "Host: soak", "User-Agent: bench-soak"]
        if not k.keepalive:
            head.append("Connection: close")
        if k.body:
            head += ["Content-Type: application/octet-stream", f"Content-Length: {len(k.body)}"]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + k.body

    def _check(self, status: int, body: bytes, path: str) -> None:
        if status != 200:
            raise Failure("status", f"HTTP {status}: {body[:80]!r}")
        k = self.kind
        if k.echo_path:
            if k.expect not in body or f"PATH_INFO: {path}<".encode() not in body:
                raise Failure("body", f"expected {k.expect!r} and PATH_INFO {path}: {body[:120]!r}")
        elif body != k.expect:
            raise Failure("body", f"expected {k.expect!r}: {body[:120]!r}")

    def request(self, path: str) -> Outcome:
        out = Outcome(self.kind.name, time.monotonic())
        reused = self.sock is not None
        try:
            self._once(path, out)
        except BaseException as exc:   # noqa: BLE001  (every failure is an outcome)
            f = _classify(exc, self.reader.got if self.reader else 0)
            self.close()
            if reused and f.why in ("reset", "closed") and f.got_bytes == 0:
                # The kept-alive connection was closed under us before any byte of an answer
                # (an idle close, a reload): RFC 9112 9.3.1 lets a client send it again.
                out.retried, out.stale_port = True, out.port
                try:
                    self._once(path, out)
                except BaseException as exc2:   # noqa: BLE001
                    f = _classify(exc2, self.reader.got if self.reader else 0)
                    self.close()
                    out.why, out.detail = f.why, f.detail
                else:
                    out.ok = True
            else:
                out.why, out.detail = f.why, f.detail
        else:
            out.ok = True
        out.t1 = time.monotonic()
        return out

    def _once(self, path: str, out: Outcome) -> None:
        """One request on this client's connection (a new one if it has none), all of it within
        `timeout` seconds of the request's start: connect, send and the whole answer."""
        k = self.kind
        deadline = out.t0 + self.timeout
        if self.sock is None:
            out.port = None
            self.sock = _connect(self.addr, max(0.01, deadline - time.monotonic()))
            self.reader = Reader(self.sock)
        out.port = self.sock.getsockname()[1]
        self.reader.got = 0
        self.reader.deadline = deadline
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        self.sock.sendall(self._request_bytes(path))
        status, _headers, body, close = self.reader.response()
        if k.proto == "uwsgi" or not k.keepalive or close:
            self.close()
        self._check(status, body, path)


class Stream:
    """One Kind sent open loop at a fixed rate: each request starts on its schedule in a thread of
    its own, whatever happened to the earlier ones, so a server that stalls cannot lower the load
    it is offered (and every request it leaves waiting is counted). A kept-alive kind reuses an
    idle connection when one is open, else opens one, as a browser would."""

    def __init__(self, kind: Kind, rate: float):
        self.kind, self.rate = kind, rate
        self.outcomes: list[Outcome] = []
        self.in_flight = 0
        self.in_flight_max = 0
        self.not_sent = 0            # over the in-flight cap (never expected: it bounds this client)
        self._idle: list[Client] = []
        self._lock = threading.Lock()

    def run(self, host: str, port: int, stop: threading.Event, timeout: float, seed: int,
            record: threading.Event) -> list[threading.Thread]:
        interval = 1.0 / self.rate
        cap = int(self.rate * timeout * 2) + 20

        def one(path: str) -> None:
            client = None
            if self.kind.keepalive:
                with self._lock:
                    client = self._idle.pop() if self._idle else None
            client = client or Client(self.kind, host, port, timeout)
            o = client.request(path)
            with self._lock:
                self.in_flight -= 1
                if record.is_set():
                    self.outcomes.append(o)
                if client.sock is not None and not stop.is_set() and len(self._idle) < 16:
                    self._idle.append(client)
                    client = None
            if client is not None:
                client.close()

        def schedule() -> None:
            rng = random.Random(seed)
            nxt = time.monotonic() + rng.random() * interval
            seq = 0
            while not stop.is_set():
                delay = nxt - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    break
                nxt += interval
                seq += 1
                with self._lock:
                    if self.in_flight >= cap:
                        self.not_sent += 1
                        continue
                    self.in_flight += 1
                    self.in_flight_max = max(self.in_flight_max, self.in_flight)
                threading.Thread(target=one, args=(f"/soak/{self.kind.name}/{seq}",), daemon=True).start()

        t = threading.Thread(target=schedule, daemon=True, name=f"soak-{self.kind.name}")
        t.start()
        return [t]

    def drain(self, timeout: float) -> None:
        """Wait for the requests still in flight (each ends by its own deadline), close idle connections."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.in_flight <= 0:
                    break
            time.sleep(0.05)
        with self._lock:
            idle, self._idle = self._idle, []
        for c in idle:
            c.close()


KINDS = [
    # name, protocol, keep-alive, method/body, modifier1, the right answer
    (Kind("http-get-close", "http"), 30),
    (Kind("http-get-keepalive", "http", keepalive=True), 30),
    (Kind("http-post-keepalive", "http", keepalive=True, method="POST", body=bytes(range(256)) * 8), 20),
    (Kind("uwsgi-lua", "uwsgi", modifier1=6, expect=b"<p>Hello Wsapi!</p>", echo_path=True), 35),
    (Kind("uwsgi-wsgi", "uwsgi", modifier1=0), 35),
]
