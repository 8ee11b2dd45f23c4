"""TLS over a cooperative socket (--greenlet-cooperative, cooperative.py): the SSLSocket every
SSLContext.wrap_socket() makes in the worker (ssl.SSLContext.sslsocket_class, the standard
library's own hook) waits on the worker's loop when OpenSSL wants to read or write, inside a
request's greenlet, and behaves as ssl.SSLSocket anywhere else. urllib3/requests, http.client,
smtplib... get https without holding the worker.

ssl.SSLSocket reaches its fd through OpenSSL: once its socket is non-blocking (cooperative.py's
conversion at the first use in a request greenlet) a call that would block raises
SSLWantReadError / SSLWantWriteError, which is where we wait and retry.
"""

from __future__ import annotations

import errno
import os
import ssl

from .cooperative import _NATIVE, Cooperative, _deadline, wait_fd

_SSLSocket = ssl.SSLSocket


class CooperativeSSLSocket(Cooperative, _SSLSocket):
    _co = _NATIVE       # SSLSocket._create() does not run our __init__: the class default

    def _ssl_io(self, fn, writing, *args):
        t, cooperative = self._mode()
        if t is _NATIVE or t == 0.0:
            return fn(self, *args)
        deadline = _deadline(t)
        while True:
            try:
                return fn(self, *args)
            except ssl.SSLWantReadError:
                direction = False
            except ssl.SSLWantWriteError:
                direction = True
            except BlockingIOError:     # plain socket calls (before the handshake, unwrapped)
                direction = writing
            wait_fd(self.fileno(), direction, deadline, cooperative)

    # read() serves recv() and recv_into(); send() serves sendall() and sendfile()
    def read(self, len=1024, buffer=None):
        return self._ssl_io(_SSLSocket.read, False, len, buffer)

    def write(self, data):
        return self._ssl_io(_SSLSocket.write, True, data)

    def send(self, data, flags=0):
        return self._ssl_io(_SSLSocket.send, True, data, flags)

    def do_handshake(self, block=False):
        return self._ssl_io(_SSLSocket.do_handshake, False, block)

    def unwrap(self):
        return self._ssl_io(_SSLSocket.unwrap, False)

    def _real_connect(self, addr, connect_ex):
        t, cooperative = self._mode()
        if t is _NATIVE or t == 0.0:
            return _SSLSocket._real_connect(self, addr, connect_ex)
        # SSLSocket._real_connect, with the TCP connect waiting cooperatively
        if self.server_side:
            raise ValueError("can't connect in server-side mode")
        if self._connected or self._sslobj is not None:
            raise ValueError("attempt to connect already-connected SSLSocket!")
        self._sslobj = self.context._wrap_socket(self, False, self.server_hostname,
                                                 owner=self, session=self._session)
        try:
            try:
                rc = self._connect(addr, t, cooperative)
            except TimeoutError:
                if not connect_ex:
                    raise
                rc = errno.EWOULDBLOCK
            if rc and not connect_ex:
                raise OSError(rc, os.strerror(rc))
            if not rc:
                self._connected = True
                if self.do_handshake_on_connect:
                    self.do_handshake()
            return rc
        except (OSError, ValueError):
            self._sslobj = None
            raise


def install() -> None:
    ssl.SSLContext.sslsocket_class = CooperativeSSLSocket
