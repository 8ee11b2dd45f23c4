"""The ASGI `websocket` scope on the cffi plugin, against real ./uwsgi processes and the
`websockets` client: echo (text and bytes), subprotocols and accept headers, close codes both
ways, refusal (403) and denial responses, the server's RFC 6455 checks (1009, 1002, 1007),
pings, back-pressure on a client that does not read, app errors (1011) and a graceful stop
(1001). The app is asgi_apps.ws; Starlette's and FastAPI's are in test_asgi_frameworks.py."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import struct
import time
from pathlib import Path

import pytest
from helpers import Server, free_port, http_get, wait_file
from nginx import AVAILABLE as NGINX_AVAILABLE
from nginx import Nginx, uwsgi_pass_conf

websockets = pytest.importorskip("websockets")
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

APPS = Path(__file__).resolve().parent
BASE = ["--pythonpath", APPS, "--async", "20", "--asgi", "asgi_apps:ws", "--websocket-max-size", "64"]


@pytest.fixture(scope="module")
def marks(tmp_path_factory):
    return tmp_path_factory.mktemp("asgi-ws-marks")


@pytest.fixture(scope="module")
def srv(marks):
    port = free_port()
    with Server(["--master", "--http-socket", f"127.0.0.1:{port}", *BASE], port, env={"MARKS": str(marks)}) as s:
        s.wait_log("lifespan startup complete")
        yield s


def url(srv, path: str) -> str:
    return f"ws://127.0.0.1:{srv.port}{path}"


def raw_handshake(port: int, path: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def client_frame(opcode: int, payload: bytes, masked: bool = True) -> bytes:
    mask = os.urandom(4) if masked else b""
    head = struct.pack("!BB", 0x80 | opcode, (0x80 if masked else 0) | len(payload))
    if masked:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + payload


def close_code_of(s: socket.socket) -> int:
    data = b""
    while len(data) < 4:
        chunk = s.recv(64)
        if not chunk:
            break
        data += chunk
    assert data[0] == 0x88, data
    return struct.unpack("!H", data[2:4])[0]


def test_echo_text_and_bytes_and_the_request_log(srv):
    with connect(url(srv, "/echo")) as ws:
        ws.send("hello")
        assert ws.recv() == "echo:hello"
        ws.send(b"\x00\x01")
        assert ws.recv() == b"echo:\x00\x01"
        ws.send("x" * 40000)                        # a 16-bit length frame
        assert ws.recv() == "echo:" + "x" * 40000
        ws.ping(b"p").wait(5)                        # the server answers pings
        assert ws.response.headers["x-ws"] == "yes"
    assert srv.wait_log("GET /echo => generated 0 bytes")
    assert http_get(srv.port, "/plain")[2] == b"plain http"      # the same app's http scope


def test_subprotocol_is_the_apps_choice(srv):
    with connect(url(srv, "/echo"), subprotocols=["one", "two"]) as ws:
        assert ws.subprotocol == "two"
    with connect(url(srv, "/echo")) as ws:
        assert ws.subprotocol is None and "sec-websocket-protocol" not in ws.response.headers


def test_scope(srv):
    with connect(url(srv, "/scope?a=1"), subprotocols=["p1"]) as ws:
        scope = json.loads(ws.recv())
    assert scope["type"] == "websocket" and scope["scheme"] == "ws" and "method" not in scope
    assert scope["path"] == "/scope" and scope["query_string"] == "a=1"
    assert scope["subprotocols"] == ["p1"] and "websocket.http.response" in scope["extensions"]


def test_close_codes_both_ways(srv, marks):
    with connect(url(srv, "/close-4001")) as ws:
        with pytest.raises(ConnectionClosed) as e:
            ws.recv()
    assert e.value.rcvd.code == 4001 and e.value.rcvd.reason == "bye"
    with connect(url(srv, "/echo")) as ws:
        ws.send("hi")
        ws.recv()
        ws.close(4002, "client leaves")
    assert wait_file(marks / "ws-disconnect").split()[-1] == "4002"


def test_lost_connection_is_1006(srv, marks):
    s = raw_handshake(srv.port, "/echo")
    before = (marks / "ws-disconnect").read_text().split() if (marks / "ws-disconnect").exists() else []
    s.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = (marks / "ws-disconnect").read_text().split()
        if len(now) > len(before):
            break
        time.sleep(0.05)
    assert now[-1] == "1006"


def test_refusal_is_403_and_a_denial_response_goes_out(srv):
    with pytest.raises(InvalidStatus) as e:
        connect(url(srv, "/refuse"))
    assert e.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as e:
        connect(url(srv, "/deny"))
    assert e.value.response.status_code == 401 and e.value.response.body == b"who are you"
    assert e.value.response.headers["www-authenticate"] == "Basic"


@pytest.mark.parametrize("frame,code", [
    (client_frame(0x2, b"y" * 100, masked=False), 1002),      # an unmasked client frame
    (client_frame(0x1, b"\xff\xfe"), 1007),                   # text that is not UTF-8
])
def test_protocol_violations_close_with_the_rfc_code(srv, frame, code):
    s = raw_handshake(srv.port, "/echo")
    s.sendall(frame)
    assert close_code_of(s) == code
    s.close()


def test_message_over_max_size_is_1009(srv):
    with connect(url(srv, "/echo"), max_size=None) as ws:
        ws.send(b"z" * (100 * 1024))                  # --websocket-max-size 64 (KB)
        with pytest.raises(ConnectionClosed) as e:
            ws.recv()
    assert e.value.rcvd.code == 1009
    with connect(url(srv, "/echo")) as ws:            # the worker lives on
        ws.send("again")
        assert ws.recv() == "echo:again"


def test_app_error_closes_with_1011(srv):
    with connect(url(srv, "/echo")) as ws:
        ws.send("boom")
        with pytest.raises(ConnectionClosed) as e:
            ws.recv()
    assert e.value.rcvd.code == 1011
    srv.wait_log("RuntimeError: boom in the websocket app")


def test_send_waits_for_a_client_that_does_not_read(srv, marks):
    s = raw_handshake(srv.port, "/flood")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    time.sleep(1.5)
    lines = wait_file(marks / "flood").split("\n")
    n, rss = map(int, lines[-2].split())
    # 4000 x 64 KB = 250 MB if send() did not wait; the kernel's buffers hold a few MB
    assert n < 400, f"{n} messages sent to a client that reads nothing"
    first_rss = int(lines[0].split()[1])
    assert rss - first_rss < 30 * 1024, (first_rss, rss)
    s.close()
    assert wait_file(marks / "flood-end").startswith("OSError")
    with connect(url(srv, "/echo")) as ws:            # the worker was never blocked
        ws.send("still here")
        assert ws.recv() == "echo:still here"


def test_graceful_stop_closes_open_sessions_with_1001(tmp_path):
    port = free_port()
    with Server(["--master", "--http-socket", f"127.0.0.1:{port}", *BASE], port,
                env={"MARKS": str(tmp_path)}, stop_signal=signal.SIGTERM) as s:
        s.wait_log("lifespan startup complete")
        with connect(f"ws://127.0.0.1:{port}/echo") as ws:
            ws.send("a")
            assert ws.recv() == "echo:a"
            t0 = time.monotonic()
            s.signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as e:
                ws.recv(timeout=10)
        assert e.value.rcvd.code == 1001
        assert s.stop() == 0
        assert time.monotonic() - t0 < 10
    assert (tmp_path / "ws-disconnect").read_text().split() == ["1001"]
    assert (tmp_path / "shutdown").exists()


@pytest.mark.skipif(not NGINX_AVAILABLE, reason="nginx is not installed")
def test_behind_nginx_uwsgi_pass(tmp_path):
    port, upstream = free_port(), free_port()
    conf = uwsgi_pass_conf(tmp_path / "nginx", port, upstream, {"/": 0})
    with Server(["--socket", f"127.0.0.1:{upstream}", *BASE], upstream, env={"MARKS": str(tmp_path)}), \
            Nginx(tmp_path / "nginx", conf, port):
        with connect(f"ws://127.0.0.1:{port}/echo", subprotocols=["x"]) as ws:
            assert ws.subprotocol == "x"
            ws.send("via uwsgi_pass")
            assert ws.recv() == "echo:via uwsgi_pass"


def test_over_tls(tmp_path):
    import shutil
    import ssl
    import subprocess
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "c.pem", tmp_path / "c.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    ctx = ssl.create_default_context(cafile=str(cert))
    port = free_port()
    with Server(["--https-socket", f"127.0.0.1:{port},{cert},{key}", *BASE], port, env={"MARKS": str(tmp_path)}):
        with connect(f"wss://localhost:{port}/scope", ssl=ctx,
                     sock=socket.create_connection(("127.0.0.1", port), timeout=10)) as ws:
            assert json.loads(ws.recv())["scheme"] == "wss"
        with connect(f"wss://localhost:{port}/echo", ssl=ctx,
                     sock=socket.create_connection(("127.0.0.1", port), timeout=10)) as ws:
            for msg in ("secure", "y" * 50000):
                ws.send(msg)
                assert ws.recv() == "echo:" + msg


def test_pings_while_the_app_waits_and_no_pong_ends_the_session(tmp_path):
    port = free_port()
    with Server(["--http-socket", f"127.0.0.1:{port}", *BASE, "--websocket-ping-freq", "1",
                 "--websocket-pong-tolerance", "1"], port, env={"MARKS": str(tmp_path)}) as s:
        with connect(f"ws://127.0.0.1:{port}/echo") as ws:     # a client that answers pings
            time.sleep(1.6)
            ws.send("still open")
            assert ws.recv() == "echo:still open"
        sock = raw_handshake(port, "/echo")                    # one that does not
        t0 = time.monotonic()
        first = sock.recv(2)
        assert first[0] == 0x89 and 0.5 < time.monotonic() - t0 < 5, first    # a ping
        sock.settimeout(10)
        while sock.recv(4096):
            pass
        assert time.monotonic() - t0 < 8
        sock.close()
        wait_file(tmp_path / "ws-disconnect")
        s.wait_log("no PONG received")
