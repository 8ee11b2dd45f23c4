"""--log-sendfile and the request line's " via sendfile() " / " via offload() " (uWSGI's
uwsgi_logit_simple), and the stats' can_offload / offloaded_requests, against real instances:
static files (small from memory, large by sendfile, large through an offload thread), a
wsgi.file_wrapper body, and the line as Debian's uWSGI writes it when it is installed."""

from __future__ import annotations

import json
import re
import shutil
import socket
import time

import pytest
from helpers import Server, free_port, http_get, http_request

APP = '''
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    if environ["PATH_INFO"] == "/wrapped":
        return environ["wsgi.file_wrapper"](open(__file__, "rb"))
    return [b"dynamic"]
'''

VIA = re.compile(r"(GET|HEAD) (\S+) => generated (\d+) bytes in \d+ msecs( via \w+\(\))? \(HTTP/1\.1 (\d+)\)")


def _files(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "small.txt").write_bytes(b"s" * 1024)
    (root / "large.bin").write_bytes(b"L" * (24 << 20))     # more than a loopback socket takes at once
    (root / "empty.txt").write_bytes(b"")
    app = tmp_path / "app.py"
    app.write_text(APP)
    return root, app


def _lines(log: str) -> dict:
    """path -> (method, size, via or '', status) of each request line."""
    out = {}
    for m in VIA.finditer(log):
        out[(m.group(1), m.group(2))] = (int(m.group(3)), (m.group(4) or "").strip(), int(m.group(5)))
    return out


def _stats(port: int) -> dict:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return json.loads(data)


def test_via_in_request_lines_and_offload_stats(tmp_path):
    root, app = _files(tmp_path)
    port, stats = free_port(), free_port()
    args = ["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", app, "--master", "--processes", "1",
            "--static-map", f"/s={root}", "--offload-threads", "1", "--stats", f"127.0.0.1:{stats}"]
    with Server(args, port) as s:
        assert http_get(port, "/s/small.txt")[2] == b"s" * 1024
        assert len(http_get(port, "/s/large.bin", timeout=60)[2]) == 24 << 20
        assert http_request(port, "HEAD", "/s/small.txt")[0] == 200
        assert http_get(port, "/s/empty.txt")[0] == 200
        assert http_get(port, "/dynamic")[2] == b"dynamic"
        assert http_get(port, "/wrapped")[2] == app.read_bytes()
        log = s.wait_log("GET /wrapped")
        doc = _stats(stats)
    lines = _lines(log)
    assert lines[("GET", "/s/small.txt")] == (1024, "via sendfile()", 200), log
    assert lines[("GET", "/s/large.bin")] == (24 << 20, "via offload()", 200), log
    assert lines[("HEAD", "/s/small.txt")][1] == "", log          # no body sent: no via
    assert lines[("GET", "/s/empty.txt")][1] == "", log
    assert lines[("GET", "/dynamic")][1] == "", log
    assert lines[("GET", "/wrapped")][1] == "via sendfile()", log
    assert [sock["can_offload"] for sock in doc["sockets"]] == [1]
    cores = doc["workers"][0]["cores"]
    assert sum(c["offloaded_requests"] for c in cores) == 1
    assert sum(c["static_requests"] for c in cores) >= 3


def test_log_sendfile_with_disable_logging(tmp_path):
    root, app = _files(tmp_path)
    port, stats = free_port(), free_port()
    args = ["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", app, "--master", "--processes", "1",
            "--static-map", f"/s={root}", "--disable-logging", "--log-sendfile", "1", "--stats", f"127.0.0.1:{stats}"]
    with Server(args, port) as s:
        assert http_get(port, "/dynamic")[0] == 200
        assert http_request(port, "HEAD", "/s/small.txt")[0] == 200
        assert http_get(port, "/s/small.txt")[0] == 200
        assert len(http_get(port, "/s/large.bin", timeout=60)[2]) == 24 << 20
        assert http_get(port, "/wrapped")[0] == 200
        log = s.wait_log("GET /wrapped")
        time.sleep(0.3)
        log = s.log()
        doc = _stats(stats)
    lines = _lines(log)
    # only the requests whose body went by sendfile are logged
    assert set(lines) == {("GET", "/s/small.txt"), ("GET", "/s/large.bin"), ("GET", "/wrapped")}, log
    assert all(v[1] == "via sendfile()" for v in lines.values()), log
    assert "not supported" not in log
    assert [sock["can_offload"] for sock in doc["sockets"]] == [0]      # no --offload-threads


@pytest.mark.skipif(shutil.which("/usr/bin/uwsgi") is None, reason="Debian's uWSGI is not installed")
def test_line_matches_real_uwsgi(tmp_path):
    """The same static request logged by uWSGI 2.0 and by us: the same words around "via"."""
    root, app = _files(tmp_path)
    got = {}
    for name, binary in (("uwsgi", "/usr/bin/uwsgi"), ("ours", None)):
        port = free_port()
        args = ["--http-socket", f"127.0.0.1:{port}", "--static-map", f"/s={root}", "--master",
                "--processes", "1", "--disable-logging", "--log-sendfile", "1", "--wsgi-file", app]
        if binary:
            args = ["--plugin", "python3", *args]
        kw = {"binary": binary} if binary else {}
        with Server(args, port, **kw) as s:
            assert http_get(port, "/s/small.txt")[0] == 200
            log = s.wait_log("GET /s/small.txt")
        got[name] = _lines(log)[("GET", "/s/small.txt")]
    assert got["ours"] == got["uwsgi"] == (1024, "via sendfile()", 200)
