"""--threads: a one-core loop holds at most one connection still to be served, so concurrent
connections spread over the idle threads instead of queueing behind a blocking request (and
timing out there); a held connection that closes or times out gives accepting back."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from helpers import UWSGI, Server, free_port

pytestmark = pytest.mark.skipif(not UWSGI.exists(), reason="./uwsgi is not built (make build)")

APP = '''
import time
def application(environ, start_response):
    time.sleep(float(environ.get("QUERY_STRING") or 0))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"core=%d" % environ["uwsgi.core"]]
'''


def fetch(port: int, path: str, timeout: float = 20.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % path.encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk


def app_file(tmp_path) -> str:
    p = tmp_path / "blocking.py"
    p.write_text(APP)
    return str(p)


def test_concurrent_blocking_requests_land_on_distinct_threads(tmp_path):
    port = free_port()
    with Server(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", app_file(tmp_path),
                 "--threads", "4", "--disable-logging"], port) as s:
        for _ in range(8):
            results = [None] * 4

            def one(i):
                try:
                    results[i] = fetch(port, "/?1")
                except OSError as e:
                    results[i] = repr(e).encode()

            ts = [threading.Thread(target=one, args=(i,)) for i in range(4)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            assert all(r.startswith(b"HTTP/1.1 200") for r in results), (results, s.log()[-2000:])
            # 4 requests of 1 s started together: each on its own thread (core), none queued
            cores = sorted(r.rsplit(b"core=", 1)[1] for r in results)
            assert cores == [b"0", b"1", b"2", b"3"], results


@pytest.mark.parametrize("how", ["close", "timeout"])
def test_held_connection_gone_gives_accepting_back(tmp_path, how):
    port = free_port()
    with Server(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", app_file(tmp_path),
                 "--threads", "1", "--socket-timeout", "2", "--disable-logging"], port) as s:
        assert fetch(port, "/").startswith(b"HTTP/1.1 200")
        silent = socket.create_connection(("127.0.0.1", port))   # held: sends nothing
        time.sleep(0.5)
        got = []
        t = threading.Thread(target=lambda: got.append(fetch(port, "/", timeout=15)))
        t.start()
        time.sleep(0.5)
        if how == "close":
            silent.close()
        t.join(15)
        silent.close()
        assert got and got[0].startswith(b"HTTP/1.1 200"), (got, s.log()[-2000:])
