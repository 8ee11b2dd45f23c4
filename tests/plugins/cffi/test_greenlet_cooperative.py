"""--greenlet-cooperative (cffi_plugin/cooperative.py, cooperative_ssl.py): under --async N
--greenlet, a plain WSGI app's time.sleep, sockets (http.client, urllib, ssl), getaddrinfo and
select.select suspend only their core. Real processes: the server, and a slow HTTP/HTTPS
backend this test runs in threads."""

from __future__ import annotations

import http.server
import shutil
import ssl
import subprocess
import textwrap
import threading
import time
import urllib.parse

import pytest
from helpers import Server, free_port, http_get, parallel_get, run_uwsgi

pytest.importorskip("greenlet")

APP = textwrap.dedent('''
    import select, socket, ssl, threading, time, urllib.parse, urllib.request
    import uwsgi

    ORIGINAL_SLEEP = time.sleep     # the app loads in the master: nothing patched there

    def backend_get(port, delay, recv_into=False):
        s = socket.socket()
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /slow?d=%s HTTP/1.0\\r\\n\\r\\n" % delay.encode())
        data = b""
        buf = bytearray(7)
        while True:
            if recv_into:
                n = s.recv_into(buf)
                chunk = bytes(buf[:n])
            else:
                chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        s.close()
        return data.split(b"\\r\\n\\r\\n", 1)[1]

    def application(env, start_response):
        path = env["PATH_INFO"]
        q = dict(urllib.parse.parse_qsl(env["QUERY_STRING"]))
        port = int(q.get("port", 0))
        if path == "/sleep":
            time.sleep(0.2)
            out = b"slept core=%d" % uwsgi.async_id()
        elif path == "/raw":
            out = backend_get(port, "0.2", recv_into=q.get("into") == "1")
        elif path == "/timeout":
            s = socket.create_connection(("127.0.0.1", port))
            s.settimeout(0.2)
            s.sendall(b"GET /slow?d=3 HTTP/1.0\\r\\n\\r\\n")
            t0 = time.monotonic()
            try:
                s.recv(100)
                out = b"no timeout"
            except socket.timeout:
                out = b"timeout after %.1f timeout=%r blocking=%r" % (
                    time.monotonic() - t0, s.gettimeout(), s.getblocking())
            s.close()
        elif path == "/select":
            r, w = socket.socketpair()
            threading.Timer(0.2, w.send, (b"x",)).start()
            t0 = time.monotonic()
            ready = select.select([r], [], [], 5)
            got = time.monotonic() - t0
            t0 = time.monotonic()
            empty = select.select([r], [], [], 0.2) if not r.recv(1) else select.select([r], [], [], 0.2)
            out = b"ready=%d after=%.1f then=%r after=%.1f" % (
                ready[0] == [r], got, empty, time.monotonic() - t0)
            r.close(); w.close()
        elif path == "/dns":
            infos = socket.getaddrinfo("localhost", port, socket.AF_INET, socket.SOCK_STREAM)
            out = b"%s %s" % (infos[0][4][0].encode(), socket.gethostbyname("localhost").encode())
        elif path == "/http":
            with urllib.request.urlopen("http://localhost:%d/slow?d=0.2" % port, timeout=10) as r:
                out = b"http:" + r.read()
        elif path == "/https":
            ctx = ssl.create_default_context(cafile=q["ca"])
            with urllib.request.urlopen("https://localhost:%d/slow?d=0.2" % port, context=ctx, timeout=10) as r:
                out = b"https:" + r.read()
        elif path == "/accept":
            lst = socket.socket()
            lst.bind(("127.0.0.1", 0))
            lst.listen(1)
            lst.settimeout(5)
            peer = lst.getsockname()

            def client():                   # another thread: the original, blocking behaviour
                ORIGINAL_SLEEP(0.1)
                c = socket.create_connection(peer)
                c.sendall(b"from thread")
                c.close()
            threading.Thread(target=client).start()
            conn, _ = lst.accept()
            out = b"%s %s" % (type(conn).__name__.encode(), conn.recv(100))
            conn.close(); lst.close()
            lst = socket.socket()
            lst.bind(("127.0.0.1", 0)); lst.listen(1); lst.settimeout(0.2)
            try:
                lst.accept()
            except socket.timeout:
                out += b" accept-timeout"
            lst.close()
        elif path == "/thread":
            result = []

            def outside():                  # not a request greenlet: the original sleep
                t0 = time.monotonic()
                time.sleep(0.1)
                result.append(time.monotonic() - t0)
            t = threading.Thread(target=outside)
            t.start(); t.join()
            out = b"patched=%d thread_slept=%d" % (time.sleep is not ORIGINAL_SLEEP, result[0] >= 0.09)
        elif path == "/refused":
            s = socket.socket()
            try:
                s.connect(("127.0.0.1", port))
                out = b"connected?"
            except ConnectionRefusedError:
                out = b"refused"
        else:
            out = b"hello"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [out]
''')


_INFLIGHT = {"now": 0, "max": 0}
_inflight_lock = threading.Lock()


class _Slow(http.server.BaseHTTPRequestHandler):
    """A backend that takes d seconds per request, and counts how many it holds at once: the
    proof that the worker's cores overlapped their calls, whatever the machine's load."""
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        with _inflight_lock:
            _INFLIGHT["now"] += 1
            _INFLIGHT["max"] = max(_INFLIGHT["max"], _INFLIGHT["now"])
        try:
            time.sleep(float(q.get("d", 0)))
        finally:
            with _inflight_lock:
                _INFLIGHT["now"] -= 1
        body = b"slow-ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _backend(ctx=None):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    srv.daemon_threads = True
    srv.handle_error = lambda *a: None      # a client that timed out and left: not an error here
    if ctx is not None:
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("coop")
    (d / "app.py").write_text(APP)
    backend = _backend()
    port = free_port()
    with Server(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", d / "app.py", "--master",
                 "--async", "8", "--greenlet", "--greenlet-cooperative"], port) as s:
        http_get(port, "/")
        yield s, backend.server_address[1], d
    backend.shutdown()


def _parallel(port, paths, timeout=20):
    """(the response bodies, the seconds until the last one) of parallel GETs."""
    responses, elapsed = parallel_get(port, paths, timeout)
    return [r.split(b"\r\n\r\n", 1)[1] for r in responses], elapsed


def test_time_sleep_suspends_only_its_core(env):
    s, _, _ = env
    bodies, elapsed = _parallel(s.port, ["/sleep"] * 8)
    assert sorted(bodies) == sorted(b"slept core=%d" % i for i in range(8)), bodies
    assert elapsed < 1.0, elapsed       # eight 0.2 s sleeps at once, not 1.6 s


@pytest.mark.parametrize("path", ["/raw", "/raw?into=1", "/http"])
def test_sockets_to_a_slow_backend_run_concurrently(env, path):
    s, bport, _ = env
    sep = "&" if "?" in path else "?"
    _INFLIGHT["max"] = 0
    bodies, elapsed = _parallel(s.port, [f"{path}{sep}port={bport}"] * 8)
    assert all(b.endswith(b"slow-ok") for b in bodies), bodies
    # one worker: the backend held several of its 0.2 s calls at once (one at a time if a call
    # held the worker; then 8 calls would also take at least 1.6 s)
    assert _INFLIGHT["max"] >= 4, (_INFLIGHT, elapsed)


def test_timeout_connect_error_select_dns_accept(env):
    s, bport, _ = env
    body = http_get(s.port, f"/timeout?port={bport}")[2]
    assert body == b"timeout after 0.2 timeout=0.2 blocking=True", body
    body = http_get(s.port, f"/refused?port={free_port()}")[2]
    assert body == b"refused"
    bodies, elapsed = _parallel(s.port, ["/select"] * 6)
    assert all(b == b"ready=1 after=0.2 then=([], [], []) after=0.2" for b in bodies), bodies
    assert elapsed < 1.5, elapsed       # 6 x 0.4 s of select waits overlap
    assert http_get(s.port, f"/dns?port={bport}")[2] == b"127.0.0.1 127.0.0.1"
    assert http_get(s.port, "/accept")[2] == b"CooperativeSocket from thread accept-timeout"


def test_outside_a_request_greenlet_the_originals_run(env):
    s, _, _ = env
    assert http_get(s.port, "/thread")[2] == b"patched=1 thread_slept=1"


def test_https_client_over_a_cooperative_socket(env):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    s, _, d = env
    cert, key = d / "localhost.pem", d / "localhost.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost"], check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    tls = _backend(ctx)
    try:
        _INFLIGHT["max"] = 0
        bodies, elapsed = _parallel(s.port, [f"/https?port={tls.server_address[1]}&ca={cert}"] * 6)
        assert all(b == b"https:slow-ok" for b in bodies), bodies
        assert _INFLIGHT["max"] >= 3, (_INFLIGHT, elapsed)   # handshakes and reads wait on the loop
    finally:
        tls.shutdown()


def test_refused_without_the_greenlet_engine(tmp_path):
    (tmp_path / "app.py").write_text(APP)
    for extra in ([], ["--async", "4"]):
        r = run_uwsgi(["--http-socket", f"127.0.0.1:{free_port()}", "--wsgi-file", tmp_path / "app.py",
                       "--greenlet-cooperative", *extra], timeout=60)
        assert r.returncode != 0
        out = r.stdout + r.stderr
        assert "--greenlet-cooperative: needs the greenlet suspend engine (--async N --greenlet)" in out, out


# ---- in process: the socket class outside a request greenlet ---------------------------------

def test_socket_class_outside_a_request_greenlet():
    import socket as socket_mod

    from cffi_plugin import cooperative
    a, b = socket_mod.socketpair()
    s = cooperative.CooperativeSocket(fileno=a.detach())
    try:
        assert isinstance(b, cooperative.CooperativeSocket)        # made before: still a socket.socket
        assert issubclass(ssl.SSLSocket, cooperative.CooperativeSocket)
        s.settimeout(0.1)                   # never used in a greenlet: the original socket's own
        assert (s.gettimeout(), s.timeout, s.getblocking()) == (0.1, 0.1, True)
        with pytest.raises(socket_mod.timeout):
            s.recv(1)
        # once converted (as a first use inside a request greenlet does) the fd is non-blocking
        # and a caller outside a greenlet gets the same semantics from poll
        s._co = s.gettimeout()
        cooperative._settimeout(s, 0.0)
        assert (s.gettimeout(), s.getblocking()) == (0.1, True)
        t0 = time.monotonic()
        with pytest.raises(socket_mod.timeout):
            s.recv(1)
        assert time.monotonic() - t0 >= 0.09
        b.sendall(b"ping")
        assert s.recv(10) == b"ping"
        s.setblocking(False)
        assert (s.gettimeout(), s.getblocking()) == (0.0, False)
        with pytest.raises(BlockingIOError):
            s.recv(1)
        s.settimeout(None)
        got = []

        def reader():
            n = 0
            while n < 300_000:
                n += len(b.recv(65536))
            got.append(n)
        t = threading.Thread(target=reader)
        t.start()
        s.sendall(b"x" * 300_000)           # more than the buffers hold: waits for the reader
        t.join(10)
        assert got == [300_000]
    finally:
        s.close()
        b.close()
