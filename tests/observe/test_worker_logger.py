"""--worker-logger / --worker-logger-req (uWSGI 2.1's single-worker loggers): without a master the
log thread runs in the one worker process itself, and the loggers get what --logger and
--req-logger would; with a master they work as --logger / --req-logger."""

from __future__ import annotations

import os

from helpers import Server, free_port, http_get, wait_file


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def test_worker_logger_without_master(tmp_path):
    port = free_port()
    server_log, req_log = tmp_path / "server.log", tmp_path / "req.log"
    args = ["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", "examples/hello.py",
            "--worker-logger", f"file:{server_log}", "--worker-logger-req", f"file:{req_log}"]
    with Server(args, port) as s:
        assert http_get(port, "/hello")[0] == 200
        req = wait_file(req_log, "GET /hello")
        text = wait_file(server_log, "(and the only)")
        assert _children(s.proc.pid) == [], "no master: the worker is the only process"
        threads = os.listdir(f"/proc/{s.proc.pid}/task")
        assert len(threads) >= 2, "the log thread runs in the worker"
    assert "GET /hello" not in text and "GET /hello" not in s.log()
    assert req.count("GET /hello") == 1 and req.startswith("[pid: ")
    assert "without its master process manager" in text


def test_worker_logger_with_master(tmp_path):
    port = free_port()
    server_log = tmp_path / "server.log"
    args = ["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", "examples/hello.py", "--master",
            "--processes", "2", "--worker-logger", f"file:{server_log}"]
    with Server(args, port):
        assert http_get(port, "/x")[0] == 200
        text = wait_file(server_log, "GET /x")
    assert "spawned uWSGI worker 2" in text
