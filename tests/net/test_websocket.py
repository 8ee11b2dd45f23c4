"""uWSGI's WebSocket API (uwsgi.websocket_*) in both runtimes, against real processes and a real
client library (the `websockets` package): echo in every mode, fragments, pings both ways,
--websocket-max-size, bad frames closing with the RFC's codes while the worker lives on, and
behind nginx (proxy_pass with Upgrade)."""

from __future__ import annotations

import socket
import struct
import textwrap
import time

import pytest
from helpers import Server, free_port, http_get, recv_all
from nginx import AVAILABLE as NGINX_AVAILABLE
from nginx import Nginx, uwsgi_pass_conf
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

WSGI_APP = textwrap.dedent('''
    import uwsgi

    def echo(msg):
        if msg.startswith(b"bin:"):
            uwsgi.websocket_send_binary(msg[4:])
        else:
            uwsgi.websocket_send(msg)

    def application(env, start_response):
        path = env["PATH_INFO"]
        if path == "/echo":
            uwsgi.websocket_handshake(env["HTTP_SEC_WEBSOCKET_KEY"], env.get("HTTP_ORIGIN", ""))
            while True:
                echo(uwsgi.websocket_recv())
        if path == "/echo-async":
            # uWSGI's async pattern: never wait in place, wait on the connection and yield
            uwsgi.websocket_handshake()
            def session():
                while True:
                    msg = uwsgi.websocket_recv_nb()
                    if msg:
                        echo(msg)
                        continue
                    yield uwsgi.wait_fd_read(uwsgi.connection_fd(), 1)
            return session()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"plain"]
''')

LUA_APP = textwrap.dedent('''
    return function(env)
      local path = env.PATH_INFO
      if path:match("/echo$") or path:match("/echo%-async$") then
        uwsgi.websocket_handshake()
        local function loop()
          while true do
            local msg = uwsgi.websocket_recv()
            if msg:sub(1, 4) == "bin:" then uwsgi.websocket_send_binary(msg:sub(5))
            else uwsgi.websocket_send(msg) end
          end
        end
        if path:match("/echo$") then loop() end
        return 200, {}, coroutine.wrap(loop)   -- a receive in the body's coroutine lets other cores run
      end
      return 200, {["Content-Type"] = "text/plain"}, "plain"
    end
''')

RUNTIMES = {
    "python": lambda d: ["--wsgi-file", d / "app.py"],
    "lua": lambda d: ["--http-socket-modifier1", "6", "--lua", d / "app.lua"],
}
MODES = {"plain": [], "threads": ["--threads", "4"], "async": ["--async", "4"],
         "master": ["--master", "--processes", "3"]}


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    d = tmp_path_factory.mktemp("ws")
    (d / "app.py").write_text(WSGI_APP)
    (d / "app.lua").write_text(LUA_APP)
    return d


def _serve(apps, runtime, *extra):
    port = free_port()
    return Server(["--http-socket", f"127.0.0.1:{port}", *RUNTIMES[runtime](apps), *extra], port), port


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_echo(apps, runtime, mode):
    srv, port = _serve(apps, runtime, *MODES[mode])
    path = "/echo-async" if mode == "async" else "/echo"
    with srv:
        with connect(f"ws://127.0.0.1:{port}{path}") as a:
            for msg in ("hello", "é" * 1000, "x" * 70000):
                a.send(msg)
                assert a.recv() == msg
            a.send(["frag", "mented ", "message"])        # one message in three frames
            assert a.recv() == "fragmented message"
            a.send("bin:\x01\x02")
            assert a.recv() == b"\x01\x02"
            a.ping(b"are you there").wait(5)               # the server answers pings itself
            if mode != "plain":
                # another session, and plain requests, while this one is open (plain mode has
                # one core: the session's)
                with connect(f"ws://127.0.0.1:{port}{path}") as b:
                    b.send("b")
                    a.send("a")
                    assert b.recv() == "b" and a.recv() == "a"
                    assert http_get(port, "/")[2] == b"plain"
        with connect(f"ws://127.0.0.1:{port}{path}") as c:  # the next session after a close
            c.send("again")
            assert c.recv() == "again"
        log = srv.wait_log("HTTP/1.1 101", count=2)
    assert "Traceback" not in log and "error" not in log.lower(), log


def _raw_ws(port: int, path: str = "/echo") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101") and b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
    return s


def _masked(b0: int, payload: bytes) -> bytes:
    mask = b"\x01\x02\x03\x04"
    return bytes([b0, 0x80 | len(payload)]) + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))


def _close_code(s: socket.socket) -> int | None:
    data = recv_all(s)
    # the last frame the server sent: a close frame with a code
    i = data.rfind(b"\x88\x02")
    return struct.unpack("!H", data[i + 2:i + 4])[0] if i >= 0 else None


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("frame, code", [
    (bytes([0x81, 0x05]) + b"Hello", 1002),                  # unmasked client frame
    (_masked(0x83, b"x"), 1002),                              # reserved opcode
    (_masked(0x81, b"\xff\xfe\xfd"), 1007),                   # text that is not UTF-8
    (_masked(0x82, b"y" * 125) + _masked(0x82, b"z" * 125), None),   # fine: then 2 KB below
])
def test_bad_frames_close_with_the_rfc_code_and_the_worker_lives(apps, runtime, frame, code):
    srv, port = _serve(apps, runtime, "--websocket-max-size", "1")
    with srv:
        s = _raw_ws(port)
        s.sendall(frame)
        if code is None:
            # a 2 KB message is over --websocket-max-size 1 (KB): 1009
            s.sendall(bytes([0x82, 0xFE]) + struct.pack("!H", 2048) + b"\0\0\0\0" + b"q" * 2048)
            code = 1009
        assert _close_code(s) == code
        s.close()
        assert http_get(port, "/")[2] == b"plain"          # the same (only) worker answers
        log = srv.log()
    assert "[uwsgi-websocket]" in log and "Traceback" not in log, log


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_server_pings_and_drops_a_client_that_does_not_answer(apps, runtime):
    srv, port = _serve(apps, runtime, "--threads", "2", "--websocket-ping-freq", "1",
                       "--websocket-pong-tolerance", "1")
    with srv:
        with connect(f"ws://127.0.0.1:{port}/echo") as ok:   # answers pings by itself: stays
            s = _raw_ws(port)                                 # never answers: dropped
            t0 = time.monotonic()
            got = recv_all(s, timeout=10)
            assert got.startswith(b"\x89\x00")                 # the ping
            assert 1.5 < time.monotonic() - t0 < 8
            ok.send("still here")
            assert ok.recv() == "still here"
        log = srv.wait_log("no PONG received")
    assert "Traceback" not in log


def test_handshake_without_a_key_is_an_app_error_answered_500(apps, tmp_path):
    app = tmp_path / "nokey.py"
    app.write_text("import uwsgi\ndef application(env, sr):\n    uwsgi.websocket_handshake()\n    return []\n")
    port = free_port()
    with Server(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", app], port) as srv:
        assert http_get(port, "/")[0] == 500
        assert "unable to complete websocket handshake" in srv.log()


@pytest.mark.skipif(not NGINX_AVAILABLE, reason="nginx is not installed")
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_behind_nginx_proxy_pass_with_upgrade(apps, runtime, tmp_path):
    port, upstream = free_port(), free_port()
    conf = textwrap.dedent(f"""
        worker_processes 1;
        daemon off;
        pid {tmp_path}/nginx.pid;
        events {{ worker_connections 64; }}
        http {{
            access_log off;
            client_body_temp_path {tmp_path}/body;
            proxy_temp_path {tmp_path}/proxy;
            server {{
                listen 127.0.0.1:{port};
                location / {{
                    proxy_pass http://127.0.0.1:{upstream};
                    proxy_http_version 1.1;
                    proxy_set_header Upgrade $http_upgrade;
                    proxy_set_header Connection "upgrade";
                }}
            }}
        }}
    """)
    srv = Server(["--http-socket", f"127.0.0.1:{upstream}", *RUNTIMES[runtime](apps)], upstream)
    with srv, Nginx(tmp_path / "nginx", conf, port):
        with connect(f"ws://127.0.0.1:{port}/echo") as ws:
            ws.send("through nginx")
            assert ws.recv() == "through nginx"
            ws.close()
        with pytest.raises(ConnectionClosed):
            ws.recv()


@pytest.mark.skipif(not NGINX_AVAILABLE, reason="nginx is not installed")
def test_behind_nginx_uwsgi_pass_both_runtimes(apps, tmp_path):
    port, upstream = free_port(), free_port()
    conf = uwsgi_pass_conf(tmp_path / "nginx", port, upstream, {"/echo": 0, "/lua/": 6})
    srv = Server(["--socket", f"127.0.0.1:{upstream}", "--threads", "2", "--wsgi-file", apps / "app.py",
                  "--lua", apps / "app.lua"], upstream)
    with srv, Nginx(tmp_path / "nginx", conf, port):
        for path in ("/echo", "/lua/echo"):
            with connect(f"ws://127.0.0.1:{port}{path}") as ws:
                ws.send(f"via uwsgi_pass {path}")
                assert ws.recv() == f"via uwsgi_pass {path}"
