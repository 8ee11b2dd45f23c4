"""Static files whatever the runtime and the protocol: the Python and the Lua app behind the same
maps, over --http-socket, over --socket (uwsgi packets as nginx sends them), behind a real nginx
(uwsgi_pass, both modifier1s on one socket), and through the --http router."""

from __future__ import annotations

import hashlib
import os

import pytest
from helpers import EXAMPLES, Server, free_port
from nginx import AVAILABLE as NGINX_AVAILABLE
from nginx import Nginx, uwsgi_pass_conf
from static_helpers import (
    CSS,
    HELLO,
    INDEX,
    SECRET,
    WSAPI,
    lua_server,
    make_tree,
    needs_binary,
    python_server,
    request,
    security_lines,
    uwsgi_get,
)

pytestmark = needs_binary
LM_HEADER = "last-modified"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    t = make_tree(tmp_path_factory.mktemp("protocols"))
    (t["www"] / "big.bin").write_bytes(os.urandom(3 << 20))
    return t


def _behaviours(get, app_body, big: bytes):
    """The same checks whatever the transport: get(path, headers=None, method="GET")."""
    status, h, body = get("/s/a.css")
    assert (status, body, h["content-type"], h["content-length"]) == (200, CSS, "text/css", str(len(CSS)))
    lm = h[LM_HEADER]
    assert get("/s/a.css", headers={"If-Modified-Since": lm})[0] == 304
    status, h, body = get("/s/plain.txt", headers={"Range": "bytes=1-3"})
    assert (status, body, h["content-range"]) == (206, b"123", "bytes 1-3/20")
    assert get("/s/plain.txt", headers={"Range": "bytes=99-"})[0] == 416
    status, h, rest = get("/s/a.css", method="HEAD")
    assert (status, h["content-length"], rest) == (200, str(len(CSS)), b"")
    assert get("/s/sub/")[2] == INDEX
    assert get("/s/out.txt")[0] == 403
    assert app_body in get("/s/nothing.css")[2]             # not a file: the app
    assert app_body in get("/")[2]
    assert hashlib.sha1(get("/s/big.bin")[2]).digest() == hashlib.sha1(big).digest()


@pytest.fixture(scope="module")
def big(tree):
    return (tree["www"] / "big.bin").read_bytes()


def _args(tree):
    return ["--static-map", f"/s={tree['www']}", "--static-index", "index.html"]


def test_python_over_http(tree, big):
    with python_server(free_port(), *_args(tree)) as s:
        _behaviours(lambda p, headers=None, method="GET": request(s.port, p, method, headers), HELLO, big)


def test_python_over_uwsgi_packets(tree, big):
    with python_server(free_port(), *_args(tree), proto="uwsgi") as s:
        _behaviours(lambda p, headers=None, method="GET": uwsgi_get(s.port, p, 0, headers, method), HELLO, big)


def test_lua_over_http(tree, big):
    with lua_server(free_port(), *_args(tree)) as s:
        _behaviours(lambda p, headers=None, method="GET": request(s.port, p, method, headers), WSAPI, big)


def test_lua_over_uwsgi_packets(tree, big):
    with lua_server(free_port(), *_args(tree), proto="uwsgi") as s:
        _behaviours(lambda p, headers=None, method="GET": uwsgi_get(s.port, p, 6, headers, method), WSAPI, big)


def test_both_runtimes_on_one_socket_async(tree, big):
    """Lua and Python in one instance, --async cores: the maps answer before either app."""
    port = free_port()
    with Server(["--socket", f"127.0.0.1:{port}", "--async", "4", "-M", "-p", "2", "--wsgi-file",
                 EXAMPLES / "hello.py", "--lua", EXAMPLES / "pippo.lua", *_args(tree)], port) as s:
        for m1, app in ((0, HELLO), (6, WSAPI)):
            _behaviours(lambda p, headers=None, method="GET", m1=m1: uwsgi_get(s.port, p, m1, headers, method), app, big)
        # a modifier1 no plugin serves: the static file still answers (the app part is 503 as before)
        assert uwsgi_get(s.port, "/s/a.css", 42)[2] == CSS


@pytest.mark.skipif(not NGINX_AVAILABLE, reason="nginx is not installed")
def test_behind_nginx(tree, big, tmp_path):
    up, ngx = free_port(), free_port()
    prefix = tmp_path / "nginx"
    conf = uwsgi_pass_conf(prefix, ngx, up, {"/lua/": 6, "/": 0}, "uwsgi_max_temp_file_size 0;")
    www = tree["www"]
    with Server(["--socket", f"127.0.0.1:{up}", "-M", "-p", "2", "--wsgi-file", EXAMPLES / "hello.py",
                 "--lua", EXAMPLES / "pippo.lua", "--static-map", f"/s={www}", "--static-map", f"/lua/s={www}",
                 "--static-index", "index.html", "--offload-threads", "2"], up) as s, Nginx(prefix, conf, ngx):
        get = lambda p, headers=None, method="GET": request(ngx, p, method, headers)
        status, h, body = get("/s/a.css")
        assert (status, body, h["content-type"]) == (200, CSS, "text/css"), s.log()
        assert get("/lua/s/a.css")[2] == CSS                  # the Lua location, modifier1 6
        assert WSAPI in get("/lua/other")[2]
        assert get("/other")[2] == HELLO
        assert get("/s/a.css", headers={"If-Modified-Since": h[LM_HEADER]})[0] == 304
        status, h, body = get("/s/plain.txt", headers={"Range": "bytes=1-3"})
        assert (status, body) == (206, b"123")
        assert get("/s/sub/")[2] == INDEX
        assert hashlib.sha1(get("/s/big.bin")[2]).digest() == hashlib.sha1(big).digest()
        # nginx resolves the dots itself: /secret/secret.txt is not under /s, the app answers
        status, h, body = get("/s/%2e%2e/secret/secret.txt")
        assert SECRET not in body
        before = len(security_lines(s.log()))
        assert get("/s/out.txt")[0] == 403
        assert len(security_lines(s.log())) == before + 1


def test_through_the_http_router(tree):
    port = free_port()
    with Server(["--http", f"127.0.0.1:{port}", "-M", "-p", "1", "--wsgi-file", EXAMPLES / "hello.py",
                 *_args(tree)], port) as s:
        status, _, body = request(s.port, "/s/a.css")
        assert (status, body) == (200, CSS), s.log()
        assert request(s.port, "/s/plain.txt", headers={"Range": "bytes=1-3"})[2] == b"123"
        assert request(s.port, "/")[2] == HELLO
