"""ASGI requests in the worker's life, as WSGI ones: harakiri ends a stuck or hanging request
(the master respawns the worker, whose lifespan starts again), a graceful reload (SIGHUP)
drains the requests in flight, and the stats server counts the ASGI app's requests and
exceptions. The app is asgi_apps.raw."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from helpers import Server, free_port, http_get, wait_file

APPS = Path(__file__).resolve().parent
BASE = ["--pythonpath", APPS, "--async", "20", "--asgi", "asgi_apps:raw"]


def pid_answering(port: int, other_than: bytes, timeout: float = 20.0) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status, _, body = http_get(port, "/pid", timeout=5)
        except OSError:
            time.sleep(0.2)
            continue
        if status == 200 and body != other_than:
            return body
        time.sleep(0.2)
    raise AssertionError("no respawned worker answered")


@pytest.mark.parametrize("path", ["/stuck", "/hang"])
def test_harakiri_ends_the_request_and_the_master_respawns(tmp_path, path):
    port = free_port()
    with Server(["--master", "--http-socket", f"127.0.0.1:{port}", "--harakiri", "2", *BASE], port,
                env={"MARKS": str(tmp_path)}) as s:
        s.wait_log("lifespan startup complete")
        before = http_get(port, "/pid")[2]
        with pytest.raises(Exception):
            http_get(port, path, timeout=15)
        s.wait_log("HARAKIRI", timeout=15)
        pid_answering(port, before)
        s.wait_log("lifespan startup complete", count=2)


def test_sighup_drains_inflight_requests(tmp_path):
    port = free_port()
    with Server(["--master", "--http-socket", f"127.0.0.1:{port}", *BASE], port,
                env={"MARKS": str(tmp_path)}) as s:
        s.wait_log("lifespan startup complete")
        before = http_get(port, "/pid")[2]
        got = []
        threads = [threading.Thread(target=lambda: got.append(http_get(port, "/sleep", timeout=20)))
                   for _ in range(5)]
        for t in threads:
            t.start()
        wait_file(tmp_path / "sleeping", "\n", count=5)    # all in the app's asyncio.sleep(0.2)
        s.signal(signal.SIGHUP)
        for t in threads:
            t.join(20)
        assert [r[2] for r in got] == [b"slept"] * 5
        pid_answering(port, before)
        s.wait_log("lifespan startup complete", count=2)
    assert len((tmp_path / "shutdown").read_text().split()) >= 1     # the old worker's lifespan ended


def test_stats_count_the_asgi_app(tmp_path):
    port, stats = free_port(), free_port()
    with Server(["--master", "--http-socket", f"127.0.0.1:{port}", "--stats", f"127.0.0.1:{stats}", *BASE], port,
                env={"MARKS": str(tmp_path)}) as s:
        s.wait_log("lifespan startup complete")
        for _ in range(3):
            assert http_get(port, "/x")[0] == 200
        assert http_get(port, "/boom")[0] == 500
        deadline = time.monotonic() + 10
        while True:
            with socket.create_connection(("127.0.0.1", stats), timeout=5) as c:
                data = b""
                while chunk := c.recv(65536):
                    data += chunk
            worker = json.loads(data)["workers"][0]
            app = worker["apps"][0]
            if app["requests"] >= 4 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert (app["requests"], app["exceptions"]) == (4, 1), worker
        assert worker["requests"] == 4 and worker["exceptions"] >= 1
