"""Shared by tests/static: a tree of files to serve, servers started on it, small clients."""

from __future__ import annotations

import gzip
import json
import os
import socket
import time
from pathlib import Path

import pytest
from helpers import EXAMPLES, UWSGI, Server, free_port, read_head, read_response

needs_binary = pytest.mark.skipif(not UWSGI.exists(), reason="./uwsgi is not built (make build)")

HELLO = b"Hello World"          # examples/hello.py, the Python app
WSAPI = b"Hello Wsapi"          # examples/pippo.lua, the Lua app
CSS = b"body { color: red }\n" * 10
INDEX = b"<h1>the index</h1>\n"
SECRET = b"the secret\n"
JS = b"console.log('plain');\n" * 50


def make_tree(tmp: Path) -> dict:
    """tmp/www (the static root), tmp/secret and tmp/www2 (outside it), with symlinks out and in."""
    www = tmp / "www"
    for d in ("sub", "sub/deep", "noindex", "gz", "other"):
        (www / d).mkdir(parents=True, exist_ok=True)
    (www / "a.css").write_bytes(CSS)
    (www / "page.html").write_bytes(b"<p>page</p>\n")
    (www / "plain.txt").write_bytes(b"0123456789abcdefghij")
    (www / "empty.txt").write_bytes(b"")
    (www / "data.weird").write_bytes(b"no type\n")
    (www / "UPPER.CSS").write_bytes(CSS)
    (www / "sub" / "index.html").write_bytes(INDEX)
    (www / "sub" / "deep" / "d.txt").write_bytes(b"deep\n")
    (www / "noindex" / "x.txt").write_bytes(b"x\n")
    (www / "app.php").write_bytes(b"<?php echo 1; ?>\n")
    (www / "gz" / "app.js").write_bytes(JS)
    (www / "gz" / "app.js.gz").write_bytes(gzip.compress(JS))
    (www / "gz" / "app.js.br").write_bytes(b"pretend-brotli")
    (www / "gz" / "only.js").write_bytes(JS)
    (www / "other" / "o.txt").write_bytes(b"other root\n")
    secret = tmp / "secret"
    secret.mkdir(exist_ok=True)
    (secret / "secret.txt").write_bytes(SECRET)
    www2 = tmp / "www2"                  # a neighbour whose name starts like the root's
    www2.mkdir(exist_ok=True)
    (www2 / "n.txt").write_bytes(b"neighbour\n")
    (www / "out.txt").symlink_to("../secret/secret.txt")
    (www / "outdir").symlink_to("../secret")
    (www / "neighbour.txt").symlink_to("../www2/n.txt")
    (www / "in.txt").symlink_to("a.css")
    (www / "gz" / "evil.js").write_bytes(JS)
    (www / "gz" / "evil.js.gz").symlink_to("../../secret/secret.txt")
    return {"tmp": tmp, "www": www, "secret": secret, "www2": www2}


def python_server(port: int, *args, proto: str = "http", log_path=None, app=True) -> Server:
    sock = ["--http-socket" if proto == "http" else "--socket", f"127.0.0.1:{port}"]
    appargs = ["--wsgi-file", EXAMPLES / "hello.py"] if app else []
    return Server([*sock, *appargs, *args], port, log_path=log_path)


def lua_server(port: int, *args, proto: str = "http", log_path=None) -> Server:
    sock = ["--http-socket", f"127.0.0.1:{port}", "--http-socket-modifier1", "6"] if proto == "http" \
        else ["--socket", f"127.0.0.1:{port}"]
    return Server([*sock, "--lua", EXAMPLES / "pippo.lua", *args], port, log_path=log_path)


def request(port: int, path: str, method: str = "GET", headers: dict | None = None, http10: bool = False):
    """One request on a new connection, the path sent as written: (status, headers, body)."""
    hdrs = {"Host": "localhost", "Connection": "close", **(headers or {})}
    head = f"{method} {path} HTTP/1.{0 if http10 else 1}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(head.encode("latin-1") + b"\r\n")
        f = s.makefile("rb")
        if method == "HEAD":
            return _head_only(f)
        return read_response(f)


def _head_only(f):
    status, headers = read_head(f)
    rest = f.read()       # the server closes (Connection: close): nothing may follow the head
    return status, headers, rest


def uwsgi_vars(path: str, port: int, headers: dict | None = None, method: str = "GET", **extra) -> dict:
    path_info, _, query = path.partition("?")
    v = {"REQUEST_METHOD": method, "REQUEST_URI": path, "PATH_INFO": path_info, "QUERY_STRING": query,
         "SCRIPT_NAME": "", "SERVER_NAME": "localhost", "SERVER_PORT": str(port),
         "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "localhost"}
    for k, val in (headers or {}).items():
        v["HTTP_" + k.upper().replace("-", "_")] = val
    v.update(extra)
    return v


def uwsgi_get(port: int, path: str, modifier1: int = 0, headers: dict | None = None, method: str = "GET",
              **extra):
    """A uwsgi-protocol request (what nginx sends): (status, headers, body)."""
    from helpers import uwsgi_packet
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(uwsgi_packet(uwsgi_vars(path, port, headers, method, **extra), modifier1))
        f = s.makefile("rb")
        if method == "HEAD":
            return _head_only(f)
        return read_response(f)


def stats(port: int) -> dict:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return json.loads(data)


def core_counter(doc: dict, key: str) -> int:
    return sum(c.get(key, 0) for w in doc["workers"] for c in w.get("cores", []))


def wait_counter(port: int, key: str, want: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        n = core_counter(stats(port), key)
        if n >= want or time.monotonic() > deadline:
            return n
        time.sleep(0.1)


def fresh_port() -> int:
    return free_port()


def security_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "[uwsgi-fileserve] security error" in line]


def request_lines(log: str, path: str) -> list[str]:
    return [line for line in log.splitlines() if line.startswith("[pid:") and f" {path} => " in line]


def touch(path: Path, mtime: int) -> None:
    os.utime(path, (mtime, mtime))
