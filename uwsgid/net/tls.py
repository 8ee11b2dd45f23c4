"""TLS for --https-socket (and the SNI certificates of --sni), with the stdlib `ssl` module.

A TLS connection keeps the plain connection's design (a non-blocking fd read and written by the
thread loop, uwsgid/net/connection.py): the bytes go through an ssl.SSLObject over two memory
BIOs, so the handshake, the reads and the writes never block and never need a socket object.
What the client sends is decrypted before the HTTP parser sees it; what the server sends is
encrypted before it joins the connection's output queue. sendfile(2) cannot encrypt: a file
body is read and sent in slices instead.

A failed handshake (a bad or missing certificate on the client side, plain HTTP on a TLS port,
a scanner) closes that connection only, with one rate-limited log line naming the peer and the
reason. Certificates are loaded when the listener is bound, in the master, before fork: a reload
(SIGHUP re-execs the master) loads them again, which is how a renewed certificate is taken.

Spec formats, as uWSGI's:
    --https-socket ADDR,CERT,KEY[,CIPHERS[,CA]]     CA: client certificates are checked against
                                                    it; "!CA" makes them mandatory
    --sni DOMAIN,CERT,KEY[,CIPHERS[,CA]]            another certificate, chosen by the name the
                                                    client asks for (exact, or *.example.com)
"""

from __future__ import annotations

import os
import ssl

from uwsgid.net.connection import RECV, Connection
from uwsgid.net.protocols import reject

FILE_SLICE = 256 * 1024


class TlsConfigError(ValueError):
    pass


def parse_spec(spec: str, option: str) -> tuple[str, str, str, str | None, str | None]:
    """"ADDR,CERT,KEY[,CIPHERS[,CA]]" -> (addr, cert, key, ciphers, ca)."""
    parts = [p.strip() for p in str(spec).split(",")]
    if len(parts) < 3 or not all(parts[:3]):
        raise TlsConfigError(f"--{option} {spec}: expected ADDR,CERT,KEY[,CIPHERS[,CA]]")
    addr, cert, key = parts[:3]
    ciphers = parts[3] if len(parts) > 3 and parts[3] else None
    ca = parts[4] if len(parts) > 4 and parts[4] else None
    return addr, cert, key, ciphers, ca


def make_context(cert: str, key: str, ciphers: str | None = None, ca: str | None = None,
                 where: str = "--https-socket") -> ssl.SSLContext:
    for path in (cert, key, (ca or "").lstrip("!")):
        if path and not os.access(path, os.R_OK):
            why = "no such file" if not os.path.exists(path) else "permission denied"
            raise TlsConfigError(f"{where}: cannot read {path}: {why}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.options |= ssl.OP_NO_COMPRESSION
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as e:
        raise TlsConfigError(f"{where}: cannot load the certificate {cert} with the key {key}: "
                             f"{getattr(e, 'reason', None) or e}") from None
    if ciphers:
        try:
            ctx.set_ciphers(ciphers)
        except ssl.SSLError:
            raise TlsConfigError(f"{where}: no usable cipher in {ciphers!r}") from None
    if ca:
        required = ca.startswith("!")
        ca = ca.lstrip("!")
        try:
            ctx.load_verify_locations(ca)
        except (ssl.SSLError, OSError) as e:
            raise TlsConfigError(f"{where}: cannot load the client CA {ca}: {e}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class Sni:
    """The --sni certificates: a context per name, picked in the handshake by the name asked."""

    def __init__(self, specs):
        self.exact: dict[str, ssl.SSLContext] = {}
        self.wild: dict[str, ssl.SSLContext] = {}
        for spec in specs or ():
            name, cert, key, ciphers, ca = parse_spec(spec, "sni")
            ctx = make_context(cert, key, ciphers, ca, where=f"--sni {name}")
            name = name.lower()
            if name.startswith("*."):
                self.wild[name[1:]] = ctx       # ".example.com"
            else:
                self.exact[name] = ctx

    def __bool__(self) -> bool:
        return bool(self.exact or self.wild)

    def attach(self, ctx: ssl.SSLContext) -> None:
        if self:
            ctx.sni_callback = self._choose

    def _choose(self, sslobj, name, _ctx):
        if not name:
            return None
        name = name.lower()
        chosen = self.exact.get(name)
        if chosen is None:
            dot = name.find(".")
            if dot > 0:
                chosen = self.wild.get(name[dot:])
        if chosen is not None:
            sslobj.context = chosen
        return None


class TlsConnection(Connection):
    """A Connection whose bytes are TLS records (see the module docstring)."""

    __slots__ = ("ssl", "bio_in", "bio_out", "handshaken")

    def __init__(self, thread_loop, fd: int, addr, listener):
        self.bio_in = ssl.MemoryBIO()
        self.bio_out = ssl.MemoryBIO()
        self.ssl = listener.tls.wrap_bio(self.bio_in, self.bio_out, server_side=True)
        self.handshaken = False
        super().__init__(thread_loop, fd, addr, listener)

    # ---- reading: raw records in, plaintext to the parser ----------------------------------
    def on_readable(self) -> None:
        try:
            raw = os.read(self.fd, RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if not raw:
            self._received(b"")
            return
        self.bio_in.write(raw)
        plain = self._decrypt()
        if plain:
            self._received(plain)

    def _decrypt(self) -> bytes | None:
        """The plaintext the records so far carry (b"" if none yet); None when the connection
        was closed (a failed handshake or a broken record)."""
        if not self.handshaken:
            try:
                self.ssl.do_handshake()
            except ssl.SSLWantReadError:
                self._push()
                return b""
            except (ssl.SSLError, OSError) as e:
                self._push()        # the alert, if any, tells the client why
                reject(0, self.peer, f"TLS handshake failed: {describe_error(e)}")
                self.close()
                return None
            self.handshaken = True
        parts = []
        read = self.ssl.read
        while True:
            try:
                data = read(RECV)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:      # close_notify: the client is done sending
                self.bio_in.write_eof()
                break
            except (ssl.SSLError, OSError) as e:
                reject(0, self.peer, f"TLS error: {describe_error(e)}")
                self.close()
                return None
            if not data:        # the record layer is at its end (read gives b"" from then on)
                break
            parts.append(data)
        self._push()
        return b"".join(parts)

    def read_plain(self) -> bytes | None:
        """For an app that took the connection (a WebSocket): plaintext now (b"": the client
        left), or None when nothing has arrived yet."""
        data = self._decrypt()
        if data:
            return data
        try:
            raw = os.read(self.fd, RECV)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return b""
        if not raw:
            return b""
        self.bio_in.write(raw)
        data = self._decrypt()
        if data is None:
            return b""
        return data or None

    def encrypt(self, data: bytes) -> bytes:
        """For an app that took the connection: the records that carry `data`."""
        self.ssl.write(data)
        return self.bio_out.read()

    # ---- writing: plaintext in, records to the connection's raw output ---------------------
    def _push(self) -> None:
        out = self.bio_out.read()
        if out:
            Connection.send(self, out)

    def send(self, data) -> None:
        if self.closed:
            return
        try:
            self.ssl.write(data)
        except (ssl.SSLError, OSError) as e:
            reject(0, self.peer, f"TLS error while sending: {describe_error(e)}")
            self.close()
            return
        self._push()

    def send_last(self, data) -> None:
        self.send(data)

    def sendfile(self, fd: int, offset: int, count: int) -> int:
        """A file body through TLS: read and sent a slice at a time (no zero-copy here)."""
        sent = 0
        while sent < count and not self.closed:
            chunk = os.pread(fd, min(FILE_SLICE, count - sent), offset + sent)
            if not chunk:
                break
            self.send(chunk)
            if self.out:
                self._drain_blocking()
            sent += len(chunk)
        return sent


def describe_error(e: Exception) -> str:
    reason = getattr(e, "reason", None)
    if reason:
        return str(reason).lower().replace("_", " ")
    return str(e) or type(e).__name__

