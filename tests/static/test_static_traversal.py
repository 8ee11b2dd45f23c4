"""Path traversal: `..` (plain and %-encoded), symlinks out of the root, a neighbour directory
whose name starts like the root's: refused with 403 and one log line each, over HTTP and over
the uwsgi protocol; --static-safe lets a directory through; nothing is decoded twice."""

from __future__ import annotations

import time

import pytest
from helpers import free_port
from static_helpers import (
    CSS,
    HELLO,
    SECRET,
    make_tree,
    needs_binary,
    python_server,
    request,
    security_lines,
    uwsgi_get,
)

pytestmark = needs_binary


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("traversal"))


@pytest.fixture(scope="module")
def srv(tree):
    www = tree["www"]
    with python_server(free_port(), "--static-map", f"/s={www}", "--static-map2", f"/www={tree['tmp']}",
                       "--static-map", f"/icon={www / 'a.css'}", "--static-index", "index.html") as s:
        yield s


def _refused(srv, send, *args, **kw):
    """send(...) is answered 403, with exactly one security line in the log, naming the request."""
    before = len(security_lines(srv.log()))
    status, _, body = send(srv.port, *args, **kw)
    assert status == 403, (args, status, body)
    assert SECRET not in body
    deadline = time.monotonic() + 5
    while len(security_lines(srv.log())) == before and time.monotonic() < deadline:
        time.sleep(0.02)
    lines = security_lines(srv.log())[before:]
    assert len(lines) == 1, lines
    assert "is not under" in lines[0] and "refused with 403" in lines[0]
    return lines[0]


@pytest.mark.parametrize("path", [
    "/s/../secret/secret.txt",
    "/s/%2e%2e/secret/secret.txt",
    "/s/%2E%2E/secret/secret.txt",
    "/s/.%2e/secret/secret.txt",
    "/s/%2e./secret/secret.txt",
    "/s/..%2fsecret/secret.txt",
    "/s/%2e%2e%2fsecret%2fsecret.txt",
    "/s/sub/../../secret/secret.txt",
    "/s/../../../../../../etc/passwd",
    "/s/../nothing/there.txt",            # refused before the file system is asked
])
def test_dot_dot_is_refused(srv, path):
    line = _refused(srv, request, path)
    assert "GET " in line and "from 127.0.0.1" in line


@pytest.mark.parametrize("path,real", [("/s/out.txt", "secret/secret.txt"), ("/s/outdir/secret.txt", "secret/secret.txt"),
                                       ("/s/neighbour.txt", "www2/n.txt")])
def test_symlinks_out_of_the_root_are_refused(srv, tree, path, real):
    line = _refused(srv, request, path)
    assert f"security error: {(tree['tmp'] / real).resolve()} is not under {tree['www'].resolve()}" in line


def test_over_the_uwsgi_protocol(tree):
    port = free_port()
    with python_server(port, "--static-map", f"/s={tree['www']}", proto="uwsgi") as s:
        for path in ("/s/../secret/secret.txt", "/s/out.txt", "/s/outdir/secret.txt"):
            _refused(s, uwsgi_get, path)
        # what nginx sends for /s/%2e%2e/secret/secret.txt: PATH_INFO decoded, REQUEST_URI not
        _refused(s, uwsgi_get, "/s/%2e%2e/secret/secret.txt", PATH_INFO="/s/../secret/secret.txt")
        assert uwsgi_get(s.port, "/s/a.css")[2] == CSS


def test_dot_dot_that_stays_inside_is_served(srv):
    assert request(srv.port, "/s/sub/../a.css")[2] == CSS
    assert request(srv.port, "/s/sub/%2e%2e/a.css")[2] == CSS
    assert request(srv.port, "/s/in.txt")[2] == CSS                   # a symlink inside the root


def test_nothing_is_decoded_twice(srv):
    _, _, body = request(srv.port, "/s/%252e%252e/secret/secret.txt")   # PATH_INFO /s/%2e%2e/...
    assert SECRET not in body and body == HELLO


def test_map2_and_a_file_map(srv):
    # map2 keeps the mountpoint: /www/../secret is tmp/secret, inside the map's root
    assert request(srv.port, "/www/../secret/secret.txt")[2] == SECRET
    _refused(srv, request, "/www/../../etc/passwd")
    # a map to a file serves that file for anything under it (uWSGI)
    assert request(srv.port, "/icon/../../etc/passwd")[2] == CSS


def test_odd_bytes_do_not_break_the_worker(srv):
    for path in ("/s/a.css%00.png", "/s/%ff%fe", "/s/" + "a" * 3000, "/s//a.css", "/s/./a.css"):
        status, _, body = request(srv.port, path)
        assert SECRET not in body and status in (200, 400, 404, 414, 431), (path, status)
    assert request(srv.port, "/s/a.css")[2] == CSS


def test_static_safe_lets_a_directory_through(tree):
    with python_server(free_port(), "--static-map", f"/s={tree['www']}", "--static-safe", str(tree["secret"])) as s:
        assert request(s.port, "/s/out.txt")[2] == SECRET
        assert request(s.port, "/s/outdir/secret.txt")[2] == SECRET
        assert request(s.port, "/s/../secret/secret.txt")[2] == SECRET     # lands under the safe dir
        _refused(s, request, "/s/neighbour.txt")                            # www2 is not safe
        _refused(s, request, "/s/../www2/n.txt")


def test_check_static_refuses_too(tree):
    with python_server(free_port(), "--check-static", str(tree["www"])) as s:
        _refused(s, request, "/../secret/secret.txt")
        _refused(s, request, "/out.txt")
        assert request(s.port, "/a.css")[2] == CSS
