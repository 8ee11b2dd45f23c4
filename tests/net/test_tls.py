"""--https-socket and --sni: TLS with the stdlib ssl module, against real processes, Python's ssl
client and curl, with certificates the test makes (openssl)."""

from __future__ import annotations

import http.client
import shutil
import signal
import socket
import ssl
import subprocess
import textwrap
import time

import pytest
from helpers import Server, free_port, recv_all, run_uwsgi
from websockets.sync.client import connect as ws_connect

APP = textwrap.dedent('''
    import time, uwsgi

    def application(env, start_response):
        path = env["PATH_INFO"]
        if path == "/ws":
            uwsgi.websocket_handshake()
            while True:
                uwsgi.websocket_send(uwsgi.websocket_recv())
        if path == "/stream":
            start_response("200 OK", [("Content-Type", "text/plain")])
            def body():
                for i in range(3):
                    yield b"part%d;" % i
                    time.sleep(0.2)
            return body()
        body = env["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"scheme=%s https=%s body=%d" % (env["wsgi.url_scheme"].encode(),
                                                   env.get("HTTPS", "").encode(), len(body))]
''')

LUA_APP = ('return function(env) return 200, {["Content-Type"] = "text/plain"}, '
           '"lua https=" .. tostring(env.HTTPS) end\n')


def _cert(d, name: str):
    cert, key = d / f"{name}.pem", d / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName=DNS:{name}"], check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("tls")
    (d / "app.py").write_text(APP)
    (d / "app.lua").write_text(LUA_APP)
    return d, _cert(d, "localhost"), _cert(d, "other.test")


def _server(certs, *extra, python=True):
    d, (cert, key), _ = certs
    port = free_port()
    app = ["--wsgi-file", d / "app.py"] if python else ["--http-socket-modifier1", "6", "--lua", d / "app.lua"]
    return Server(["--https-socket", f"127.0.0.1:{port},{cert},{key}", *app, *extra], port), port


def _sni_ctx(cafile):
    ctx = ssl.create_default_context(cafile=str(cafile))
    return ctx


def _get(port, cafile, name="localhost", path="/", body=None, method="GET"):
    ctx = _sni_ctx(cafile)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as s:
            peer = s.getpeercert()
            req = f"{method} {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n"
            if body is not None:
                req += f"Content-Length: {len(body)}\r\n"
            s.sendall(req.encode() + b"\r\n" + (body or b""))
            return recv_all(s), peer


@pytest.mark.parametrize("mode", [[], ["--threads", "2"], ["--async", "4"], ["--master", "--processes", "2"]])
def test_https_keepalive_post_and_environ(certs, mode):
    srv, port = _server(certs, *mode)
    cafile = certs[1][0]
    with srv:
        ctx = _sni_ctx(cafile)
        conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
        conn.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                    server_hostname="localhost")
        for body in (None, b"x" * 100000):          # keep-alive: two requests, one connection
            conn.request("POST" if body else "GET", "/", body=body)
            r = conn.getresponse()
            assert r.status == 200
            assert r.read() == b"scheme=https https=on body=%d" % len(body or b"")
        sock = conn.sock
        conn.request("GET", "/stream")
        r = conn.getresponse()
        assert r.getheader("Transfer-Encoding") == "chunked" and r.read() == b"part0;part1;part2;"
        assert conn.sock is sock                    # still the same TLS connection
        conn.close()
        log = srv.log()
    assert "(https)" in log and "Traceback" not in log


def test_lua_app_over_https(certs):
    srv, port = _server(certs, python=False)
    with srv:
        data, _ = _get(port, certs[1][0])
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"lua https=on")


def test_plain_http_and_garbage_on_the_tls_port_close_that_connection_only(certs):
    srv, port = _server(certs)
    with srv:
        for junk in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x00\x05hello" + b"\0" * 64):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(junk)
                assert not recv_all(s).startswith(b"HTTP/")     # closed (at most a TLS alert)
        data, _ = _get(port, certs[1][0])                 # the worker still serves TLS
        assert data.startswith(b"HTTP/1.1 200")
        log = srv.wait_log("TLS handshake failed", count=2)
    assert "http request" in log and "Traceback" not in log


def test_curl(certs):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    srv, port = _server(certs)
    cafile = certs[1][0]
    with srv:
        out = subprocess.run(["curl", "-s", "--cacert", str(cafile), "--resolve", f"localhost:{port}:127.0.0.1",
                              f"https://localhost:{port}/a", f"https://localhost:{port}/b"],
                             capture_output=True, timeout=20)
    assert out.returncode == 0 and out.stdout == b"scheme=https https=on body=0" * 2


def test_sni_picks_the_certificate_by_name(certs):
    d, (cert, key), (cert2, key2) = certs
    srv, port = _server(certs, "--sni", f"other.test,{cert2},{key2}")
    with srv:
        _, peer = _get(port, cert, "localhost")
        assert dict(x[0] for x in peer["subject"])["commonName"] == "localhost"
        data, peer = _get(port, cert2, "other.test")
        assert dict(x[0] for x in peer["subject"])["commonName"] == "other.test"
        assert data.startswith(b"HTTP/1.1 200")


def test_websocket_over_tls(certs):
    srv, port = _server(certs, "--threads", "2")
    ctx = _sni_ctx(certs[1][0])
    with srv:
        with ws_connect(f"wss://localhost:{port}/ws", ssl=ctx,
                        sock=socket.create_connection(("127.0.0.1", port), timeout=10)) as ws:
            for msg in ("secure", "y" * 50000):
                ws.send(msg)
                assert ws.recv() == msg


def test_certificate_is_read_again_on_reload(certs, tmp_path):
    d, (cert, key), (cert2, key2) = certs
    live_cert, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(cert, live_cert)
    shutil.copy(key, live_key)
    port = free_port()
    with Server(["--master", "--https-socket", f"127.0.0.1:{port},{live_cert},{live_key}",
                 "--wsgi-file", d / "app.py"], port) as srv:
        _, peer = _get(port, cert)
        assert dict(x[0] for x in peer["subject"])["commonName"] == "localhost"
        shutil.copy(cert2, live_cert)                 # the renewed certificate
        shutil.copy(key2, live_key)
        srv.signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        name = None
        while time.monotonic() < deadline:
            try:
                _, peer = _get(port, cert2, "other.test")
                name = dict(x[0] for x in peer["subject"])["commonName"]
                break
            except (ssl.SSLError, OSError):
                time.sleep(0.2)
        assert name == "other.test", srv.log()


@pytest.mark.parametrize("spec, message", [
    ("127.0.0.1:0,/nonexistent.pem,/nonexistent.key", "cannot read /nonexistent.pem"),
    ("127.0.0.1:0,CERT", "expected ADDR,CERT,KEY"),
    ("127.0.0.1:0,CERT,KEY2", "cannot load the certificate"),
])
def test_bad_tls_settings_stop_the_start_with_one_line(certs, spec, message):
    d, (cert, key), (cert2, key2) = certs
    spec = spec.replace("CERT", str(cert)).replace("KEY2", str(key2))
    r = run_uwsgi(["--https-socket", spec, "--wsgi-file", d / "app.py"], timeout=30)
    assert r.returncode == 1
    assert message in r.stderr + r.stdout and "Traceback" not in r.stderr + r.stdout


def test_https_through_the_router(certs):
    d, (cert, key), _ = certs
    port = free_port()
    with Server(["--master", "--https", f"127.0.0.1:{port},{cert},{key}", "--wsgi-file", d / "app.py"],
                port) as srv:
        data, _ = _get(port, cert, body=b"abc", method="POST")
        assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"scheme=https https=on body=3")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert not recv_all(s).startswith(b"HTTP/")
        data, _ = _get(port, cert)
        assert data.startswith(b"HTTP/1.1 200")
        assert "[uwsgi-http] - " in srv.wait_log("TLS handshake failed: http request")
