"""Real ASGI frameworks from PyPI on the cffi plugin, mounted side by side in one instance:
Starlette (lifespan state, streaming both ways, disconnects), FastAPI (a streaming response, a
background task) and Django's ASGI handler (sync and async views, a streaming response). The
apps are tests/plugins/cffi/asgi_frameworks.py."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from helpers import Server, free_port, http_get, http_request, wait_file

pytest.importorskip("starlette")
pytest.importorskip("fastapi")
pytest.importorskip("django")

APPS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def marks(tmp_path_factory):
    return tmp_path_factory.mktemp("asgi-fw-marks")


@pytest.fixture(scope="module")
def srv(marks):
    port = free_port()
    args = ["--master", "--http-socket", f"127.0.0.1:{port}", "--pythonpath", APPS, "--async", "20",
            "--manage-script-name", "--mount", "/s=asgi_frameworks:starlette",
            "--mount", "/f=asgi_frameworks:fastapi", "--mount", "/d=asgi_frameworks:django"]
    with Server(args, port, env={"MARKS": str(marks)}) as s:
        s.wait_log("lifespan startup complete", count=2)     # Starlette's and FastAPI's
        yield s


def timed_chunks(port: int, path: str) -> tuple[bytes, list[float]]:
    """The body of a streamed response and when (seconds from the request) each read came."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    t0 = time.monotonic()
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data, times = b"", []
    while chunk := s.recv(65536):
        data += chunk
        times.append(time.monotonic() - t0)
    s.close()
    return data, times


def test_starlette_lifespan_state_and_mount(srv, marks):
    status, _, body = http_get(srv.port, "/s/")
    assert (status, body) == (200, b"starlette hi from lifespan /s/")
    assert (marks / "starlette-startup").exists()


def test_starlette_streaming_upload_50mb(srv):
    data = b"z" * (50 << 20)
    status, _, body = http_request(srv.port, "POST", "/s/upload", body=data, timeout=60)
    assert status == 200 and json.loads(body) == {"size": len(data)}


def test_starlette_streaming_response_stops_when_the_client_goes(srv, marks):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.sendall(b"GET /s/stream?slow=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"line 0" in s.recv(65536)
    s.close()
    wait_file(marks / "starlette-stream-line")
    time.sleep(0.6)
    n1 = len((marks / "starlette-stream-line").read_text().split())
    time.sleep(0.6)
    n2 = len((marks / "starlette-stream-line").read_text().split())
    assert n1 == n2 and n1 < 40, f"the body went on after the client left ({n1}, then {n2} lines)"


def test_starlette_is_disconnected(srv, marks):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.sendall(b"GET /s/disconnect HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.2)
    s.close()
    wait_file(marks / "starlette-disconnected")


def test_fastapi_json_and_streaming(srv):
    status, headers, body = http_get(srv.port, "/f/items/42?q=hey")
    assert status == 200 and json.loads(body) == {"item_id": 42, "q": "hey"}
    assert headers["content-type"] == "application/json"
    data, times = timed_chunks(srv.port, "/f/stream")
    assert b"part 0" in data and b"part 4" in data and b"Transfer-Encoding: chunked" in data
    assert times[0] < 0.3 and times[-1] > 0.35, times     # the parts came as they were made


def test_fastapi_background_task_runs_after_the_response(srv, marks):
    t0 = time.monotonic()
    status, _, body = http_request(srv.port, "POST", "/f/bg")
    elapsed = time.monotonic() - t0
    assert status == 200 and json.loads(body) == {"queued": True}
    assert not (marks / "fastapi-background").exists() or elapsed >= 0.3
    assert wait_file(marks / "fastapi-background").strip() == "done"


def test_django_asgi_handler(srv):
    status, _, body = http_get(srv.port, "/d/hello?x=7")
    assert (status, body) == (200, b"django /d/hello 7")
    status, _, body = http_request(srv.port, "POST", "/d/ahello", body=b"abcdef")
    assert status == 200 and json.loads(body) == {"method": "POST", "len": 6}
    data, times = timed_chunks(srv.port, "/d/stream")
    assert b"dj 0" in data and b"dj 3" in data
    assert "the ASGI 'lifespan' protocol appears unsupported" in srv.log()


def test_starlette_websocket_endpoint(srv, marks):
    from websockets.sync.client import connect
    with connect(f"ws://127.0.0.1:{srv.port}/s/ws", subprotocols=["chat"]) as ws:
        assert ws.subprotocol == "chat"
        ws.send("ping")
        assert ws.recv() == "starlette hi from lifespan: ping"
        ws.close(4100)
    assert wait_file(marks / "starlette-ws-closed").strip() == "4100"


def test_fastapi_websocket_route(srv, marks):
    from websockets.sync.client import connect
    with connect(f"ws://127.0.0.1:{srv.port}/f/ws/lobby") as ws:
        ws.send(json.dumps({"n": 1}))
        assert json.loads(ws.recv()) == {"room": "lobby", "got": {"n": 1}}
    assert wait_file(marks / "fastapi-ws-closed").strip() == "1000"
