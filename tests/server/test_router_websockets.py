"""WebSockets through the --http / --https router (--http-websockets, as uWSGI's): the upgrade and
the workers' 101 pass unchanged, then the router splices both ways: echo with the `websockets`
client to a WSGI and a Lua app, a message bigger than the router's buffers, a close from each
side, plain keep-alive alongside, TLS; and without the option, one line saying it is needed."""

from __future__ import annotations

import http.client
import shutil
import ssl
import subprocess
import textwrap
import time

import pytest
from helpers import Server, free_port
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import connect

WSGI_APP = textwrap.dedent('''
    import uwsgi

    def application(env, start_response):
        path = env["PATH_INFO"]
        if path == "/echo":
            uwsgi.websocket_handshake(env["HTTP_SEC_WEBSOCKET_KEY"], env.get("HTTP_ORIGIN", ""))
            while True:
                msg = uwsgi.websocket_recv()
                if msg == b"bye":
                    uwsgi.websocket_send(b"leaving")
                    return []        # the server ends the session: the client sees it closed
                uwsgi.websocket_send_binary(msg) if msg[:1] == b"\\0" else uwsgi.websocket_send(msg)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"plain " + path.encode()]
''')

LUA_APP = textwrap.dedent('''
    return function(env)
      if env.PATH_INFO == "/echo" then
        uwsgi.websocket_handshake()
        while true do uwsgi.websocket_send("lua:" .. uwsgi.websocket_recv()) end
      end
      return 200, {["Content-Type"] = "text/plain"}, "lua plain"
    end
''')


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    d = tmp_path_factory.mktemp("rws")
    (d / "app.py").write_text(WSGI_APP)
    (d / "app.lua").write_text(LUA_APP)
    return d


def _router(*args, listen="--http", suffix=""):
    port = free_port()
    srv = Server(["--master", "-p", "2", "--threads", "2", listen, f"127.0.0.1:{port}{suffix}", *args], port)
    srv.start()
    srv.wait_log("spawned uWSGI http 1")
    return srv, port


def _keepalive_twice(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for path in ("/a", "/b"):
            conn.request("GET", path)
            resp = conn.getresponse()
            assert resp.status == 200 and resp.read() == f"plain {path}".encode()
            assert resp.getheader("Connection") == "keep-alive"
    finally:
        conn.close()


def test_wsgi_session_through_the_router(apps):
    srv, port = _router("--http-websockets", "--wsgi-file", apps / "app.py")
    with srv:
        with connect(f"ws://127.0.0.1:{port}/echo", max_size=None) as ws:
            ws.send("hello")
            assert ws.recv() == "hello"
            big = "é" * 450_000         # 900 KB: more than the router's 256 KB buffer per direction
            ws.send(big)
            assert ws.recv(timeout=20) == big
            ws.send(b"\0\1\2")
            assert ws.recv() == b"\0\1\2"
            ws.ping(b"x").wait(5)       # answered by the worker's session, through the splice
            _keepalive_twice(port)      # plain requests, kept alive, while the session is open
            ws.close()                  # the client closes: the worker's close frame comes back
            assert ws.close_code == 1000
        with connect(f"ws://127.0.0.1:{port}/echo") as ws:
            ws.send("bye")
            assert ws.recv() == "leaving"
            with pytest.raises(ConnectionClosed):      # the server side ends the session
                ws.recv(timeout=10)
        _keepalive_twice(port)
        log = srv.log()
    assert "Traceback" not in log and "only with --http-websockets" not in log, log


def test_lua_session_through_the_router(apps):
    srv, port = _router("--http-websockets", "--http-modifier1", "6", "--lua", apps / "app.lua")
    with srv:
        with connect(f"ws://127.0.0.1:{port}/echo") as ws:
            for msg in ("one", "x" * 100_000):
                ws.send(msg)
                assert ws.recv(timeout=10) == "lua:" + msg


def test_without_the_option_the_upgrade_is_closed_with_one_line(apps):
    srv, port = _router("--wsgi-file", apps / "app.py")
    with srv:
        with pytest.raises((ConnectionClosed, InvalidHandshake)):    # a 101 without Connection: upgrade
            with connect(f"ws://127.0.0.1:{port}/echo", open_timeout=10) as ws:
                ws.send("hello")
                ws.recv(timeout=10)
        log = srv.wait_log("only with --http-websockets")
        _keepalive_twice(port)
    assert "Traceback" not in log, log


def test_wss_through_the_https_router(apps, tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "c.pem", tmp_path / "c.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    srv, port = _router("--http-websockets", "--wsgi-file", apps / "app.py", listen="--https",
                        suffix=f",{cert},{key}")
    ctx = ssl.create_default_context(cafile=str(cert))
    with srv:
        with connect(f"wss://localhost:{port}/echo", ssl=ctx, max_size=None) as ws:
            for msg in ("tls", "y" * 700_000, "after"):
                ws.send(msg)
                assert ws.recv(timeout=20) == msg
            started = time.monotonic()
            ws.close()
            assert ws.close_code == 1000 and time.monotonic() - started < 5
