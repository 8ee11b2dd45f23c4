"""Large files: --offload-threads frees the worker during a download (a single sync worker serves
other requests meanwhile), keep-alive goes on after it, a client that goes away or stalls is
dropped and logged; without offload threads the core waits for its body on the loop (other
async cores go on, a sync worker's core is busy); a graceful stop lets a download finish."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import time

import pytest
from helpers import free_port
from static_helpers import CSS, HELLO, core_counter, make_tree, needs_binary, python_server, request, stats, uwsgi_get

pytestmark = needs_binary
BIG = 64 << 20          # far more than the socket buffers hold: the transfer lasts as long as the client


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    t = make_tree(tmp_path_factory.mktemp("offload"))
    with open(t["www"] / "big.bin", "wb") as f:
        f.write(os.urandom(1 << 20) * (BIG >> 20))
    t["sha1"] = hashlib.sha1((t["www"] / "big.bin").read_bytes()).hexdigest()
    return t


class Download:
    """A client that asks for a file and then reads only when told to."""

    def __init__(self, port: int, path: str = "/s/big.bin", headers: str = ""):
        self.s = socket.socket()
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        self.s.settimeout(30)
        self.s.connect(("127.0.0.1", port))
        self.s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
        self.buf = bytearray()
        self.head = None

    def read_head(self) -> dict:
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.s.recv(65536)
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        self.buf = bytearray(rest)
        lines = head.decode().split("\r\n")
        self.head = {"status": int(lines[0].split()[1]),
                     **{k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}}
        return self.head

    def read_body(self) -> bytes:
        n = int(self.head["content-length"])
        view = bytearray(n)
        have = len(self.buf)
        view[:have] = self.buf
        mv = memoryview(view)
        while have < n:
            got = self.s.recv_into(mv[have:], min(n - have, 1 << 20))
            if not got:
                break
            have += got
        self.buf = bytearray()
        return bytes(view[:have])

    def close(self) -> None:
        self.s.close()


def _answered_within(port: int, path: str, seconds: float):
    """GET path on a new connection; its body, or None when no answer came within `seconds`."""
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except TimeoutError:
            return None
    return data.partition(b"\r\n\r\n")[2]


def test_a_sync_worker_serves_others_during_an_offloaded_download(tree):
    sp = free_port()
    with python_server(free_port(), "--static-map", f"/s={tree['www']}", "--offload-threads", "1",
                       "-M", "-p", "1", "--stats", f"127.0.0.1:{sp}") as s:
        d = Download(s.port)
        head = d.read_head()
        assert head["status"] == 200 and head["content-length"] == str(BIG)
        time.sleep(0.3)                           # the transfer is stalled on this client now
        # the same single sync worker answers others meanwhile: the app and static files
        assert _answered_within(s.port, "/", 5) == HELLO
        assert _answered_within(s.port, "/s/a.css", 5) == CSS
        # the download was logged when handed over (as uWSGI), with its whole size
        s.wait_log(f"GET /s/big.bin => generated {BIG} bytes", timeout=5)
        body = d.read_body()
        assert len(body) == BIG and hashlib.sha1(body).hexdigest() == tree["sha1"]
        # keep-alive goes on on the same connection
        d.s.sendall(b"GET /s/a.css HTTP/1.1\r\nHost: x\r\n\r\n")
        d.read_head()
        assert d.read_body() == CSS
        d.close()
        doc = stats(sp)
        assert core_counter(doc, "offloaded_requests") == 1
        assert core_counter(doc, "static_requests") >= 3


def test_several_downloads_share_one_offload_thread(tree):
    with python_server(free_port(), "--static-map", f"/s={tree['www']}", "--offload-threads", "1") as s:
        ds = [Download(s.port) for _ in range(3)]
        for d in ds:
            assert d.read_head()["status"] == 200
        assert _answered_within(s.port, "/", 5) == HELLO
        for d in reversed(ds):
            assert hashlib.sha1(d.read_body()).hexdigest() == tree["sha1"]
            d.close()


def test_ranges_and_head_of_a_large_file_with_offload(tree):
    data = (tree["www"] / "big.bin").read_bytes()
    with python_server(free_port(), "--static-map", f"/s={tree['www']}", "--offload-threads", "2") as s:
        d = Download(s.port, headers="Range: bytes=1000-20000999\r\n")
        h = d.read_head()
        assert h["status"] == 206 and h["content-range"] == f"bytes 1000-20000999/{BIG}"
        assert d.read_body() == data[1000:20001000]
        d.close()
        status, h, rest = request(s.port, "/s/big.bin", method="HEAD")
        assert status == 200 and h["content-length"] == str(BIG) and rest == b""


def test_over_the_uwsgi_protocol_with_offload(tree):
    port = free_port()
    with python_server(port, "--static-map", f"/s={tree['www']}", "--offload-threads", "1", proto="uwsgi") as s:
        status, _, body = uwsgi_get(s.port, "/s/big.bin")
        assert status == 200 and hashlib.sha1(body).hexdigest() == tree["sha1"]
        assert uwsgi_get(s.port, "/s/a.css")[2] == CSS


def test_without_offload_async_cores_go_on_during_a_download(tree):
    with python_server(free_port(), "--static-map", f"/s={tree['www']}", "--async", "2") as s:
        d = Download(s.port)
        assert d.read_head()["status"] == 200
        time.sleep(0.3)
        assert _answered_within(s.port, "/", 5) == HELLO       # the loop is not blocked by the download
        assert hashlib.sha1(d.read_body()).hexdigest() == tree["sha1"]
        d.close()


def test_without_offload_a_sync_worker_is_busy_during_a_download(tree):
    """The contrast: one core, no offload thread: the core waits for its body (uWSGI's sync
    worker is blocked likewise); the other request is served once the download is read."""
    with python_server(free_port(), "--static-map", f"/s={tree['www']}") as s:
        d = Download(s.port)
        assert d.read_head()["status"] == 200
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", s.port), timeout=30) as other:
            other.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            other.settimeout(1.0)
            with pytest.raises(socket.timeout):
                other.recv(100)
            assert hashlib.sha1(d.read_body()).hexdigest() == tree["sha1"]
            other.settimeout(10)
            assert other.recv(100).startswith(b"HTTP/1.1 200")
        d.close()


@pytest.mark.parametrize("offload", [True, False])
def test_a_client_that_goes_away_mid_download(tree, offload):
    extra = ["--offload-threads", "1"] if offload else []
    with python_server(free_port(), "--static-map", f"/s={tree['www']}", *extra) as s:
        d = Download(s.port)
        d.read_head()
        d.s.recv(100000)
        d.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
        d.close()
        want = "went away during the offloaded response" if offload else "went away during the response"
        s.wait_log(want, timeout=10)
        assert _answered_within(s.port, "/s/a.css", 5) == CSS
        d = Download(s.port)
        d.read_head()
        assert hashlib.sha1(d.read_body()).hexdigest() == tree["sha1"]
        d.close()


@pytest.mark.parametrize("offload", [True, False])
def test_a_stalled_client_is_dropped_after_the_socket_timeout(tree, offload):
    extra = ["--offload-threads", "1"] if offload else []
    with python_server(free_port(), "--static-map", f"/s={tree['www']}", "--socket-timeout", "2", *extra) as s:
        d = Download(s.port)
        d.read_head()
        s.wait_log("stopped reading the response, dropped", timeout=15)
        body = d.read_body()                  # what was in flight, then the close
        assert len(body) < BIG
        d.close()
        assert _answered_within(s.port, "/", 5) == HELLO


def test_a_graceful_stop_lets_an_offloaded_download_finish(tree):
    with python_server(free_port(), "--static-map", f"/s={tree['www']}", "--offload-threads", "1",
                       "-M", "-p", "1") as s:
        d = Download(s.port)
        d.read_head()
        time.sleep(0.3)
        s.signal(signal.SIGTERM)              # graceful: the worker waits for its connections
        time.sleep(0.5)
        body = d.read_body()
        assert hashlib.sha1(body).hexdigest() == tree["sha1"]
        d.close()
        assert s.proc.wait(30) == 0


def test_offload_threads_without_a_static_option_is_said():
    with python_server(free_port(), "--offload-threads", "2") as s:
        assert request(s.port, "/")[2] == HELLO
        assert "--offload-threads 2: only static files are offloaded here" in s.log()


@pytest.mark.parametrize("offload", [True, False])
def test_ignore_write_errors_silences_a_client_gone_mid_download(tree, offload):
    extra = ["--offload-threads", "1"] if offload else []
    with python_server(free_port(), "--static-map", f"/s={tree['www']}", "--ignore-write-errors", *extra) as s:
        d = Download(s.port)
        d.read_head()
        d.s.recv(100000)
        d.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
        d.close()
        assert _answered_within(s.port, "/s/a.css", 5) == CSS     # the worker is free again
        time.sleep(0.5)
        assert "went away" not in s.log()
