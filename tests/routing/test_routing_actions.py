"""The action families in a real server (http-socket and the uwsgi protocol, Python and Lua):
caches, files, response/error chains, fixcl, donotlog, basicauth with an htpasswd file, and a bad
route stopping the start-up with one line."""

from __future__ import annotations

import base64
import hashlib
import http.client
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from helpers import Server, free_port, run_uwsgi, uwsgi_http_get  # noqa: E402
from nginx import AVAILABLE as NGINX_AVAILABLE  # noqa: E402
from nginx import Nginx, uwsgi_pass_conf  # noqa: E402

from uwsgid.routing import htpasswd  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("routing")
    (d / "page.html").write_bytes(b"<p>static page</p>")
    sha = base64.b64encode(hashlib.sha1(b"builder").digest()).decode()
    (d / "htpasswd").write_text(f"alice:{htpasswd._load_crypt()('wonder', 'ab')}\nbob:{{SHA}}{sha}\n")
    port, uport = free_port(), free_port()
    routes = [
        "--route", f"^/static$ static:{d}/page.html",
        "--route", f"^/file$ file:filename={d}/page.html,status=201 Created,mime=1",
        "--route", "^/file-missing$ file-next:filename=/nonexistent",
        "--route", "^/file-missing$ break-with-status:410",
        "--route", f"^/sendfile$ sendfile:filename={d}/page.html,content_type=text/x-test",
        "--route", f"^/private basicauth:secret,{d}/htpasswd",
        "--route", "^/set/(.*)$ cacheset:key=k-$1,value=v-$1",
        "--route", "^/set/ break-with-status:204",
        "--route", "^/hit cache:key=page-${PATH_INFO},content_type=text/x-cached",
        "--route", "^/hit cachestore:key=page-${PATH_INFO}",
        "--route", "^/count cacheinc:key=counter",
        "--route", "^/count cachevar:key=counter,var=COUNT,num=1",
        "--route", "^/getvar cachevar:key=k-one,var=CACHED",
        "--route", "^/fixcl-stream fixcl:",
        "--route", "^/fixcl-stream rewrite:/stream",
        "--route", "^/quiet donotlog:",
        "--route", "^/nohead disableheaders:",
        "--route-if", "equal:${HTTP_X_RUNTIME};lua setmodifier1:6",
        "--response-route-run", "addheader:X-Response: ${uwsgi[status]}",
        "--response-route-if", "equal:${PATH_INFO};/status/418 clearheaders:200",
        "--error-route-status", "503 break-with-status:500",
    ]
    args = ["--plugins", "lua,cffi", "--http-socket", f"127.0.0.1:{port}", "--socket", f"127.0.0.1:{uport}",
            "--wsgi-file", str(HERE / "route_app.py"), "--lua", str(HERE / "route_app.lua"),
            "--master", "--processes", "1", "--cache2", "name=default,items=100", *routes]
    with Server(args, port) as s:
        s.wait_port(uport)
        s.uwsgi_port = uport
        yield s


class Answer:
    def __init__(self, r):
        self.status = r.status
        self.headers = r.headers
        self.body = r.read()

    def getheader(self, name):
        return self.headers.get(name)

    def read(self):
        return self.body


def get(s, path, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=20)
    try:
        c.request("GET", path, headers=headers or {})
        return Answer(c.getresponse())
    finally:
        c.close()


def test_file_actions(server):
    r = get(server, "/static")
    assert r.status == 200 and r.read() == b"<p>static page</p>"
    assert r.getheader("Content-Type") == "text/html" and r.getheader("Last-Modified")
    r = get(server, "/file")
    assert (r.status, r.getheader("Content-Type"), r.read()) == (201, "text/html", b"<p>static page</p>")
    r = get(server, "/file-missing")
    assert r.status == 410
    r = get(server, "/sendfile")
    assert (r.status, r.getheader("Content-Type"), r.read()) == (200, "text/x-test", b"<p>static page</p>")


@pytest.mark.parametrize("runtime", ["python", "lua"])
def test_cache_actions(server, runtime):
    rt = {"X-Runtime": "lua"} if runtime == "lua" else {}
    assert get(server, "/set/one").status == 204
    body = get(server, "/getvar", rt).read()
    assert b"CACHED=v-one" in body and f"runtime={runtime}".encode() in body
    first = get(server, f"/hit-{runtime}", rt)
    assert first.getheader("Content-Type") == "text/plain"
    stored = first.read()
    again = get(server, f"/hit-{runtime}", rt)      # now answered by the cache route
    assert again.getheader("Content-Type") == "text/x-cached" and again.read() == stored
    a = get(server, "/count", rt).read()
    b = get(server, "/count", rt).read()
    na = int(a.split(b"COUNT=")[1].split(b"\n")[0])
    assert int(b.split(b"COUNT=")[1].split(b"\n")[0]) == na + 1


def test_basicauth_htpasswd(server):
    def auth(user, pw):
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}
    r = get(server, "/private")
    assert r.status == 401 and r.getheader("WWW-Authenticate") == 'Basic realm="secret"'
    assert get(server, "/private", auth("alice", "wrong")).status == 401
    r = get(server, "/private", auth("alice", "wonder"))
    assert r.status == 200 and b"REMOTE_USER=alice" in r.read()
    r = get(server, "/private", auth("bob", "builder"))
    assert r.status == 200 and b"REMOTE_USER=bob" in r.read()


def test_response_and_error_chains(server):
    r = get(server, "/anything")
    assert r.getheader("X-Response") == "200"
    r = get(server, "/status/418")
    assert r.status == 200 and r.getheader("X-App") is None and r.read() == b"app says 418"
    r = get(server, "/status/503")
    assert r.status == 500 and r.read() == b"Internal Server Error"
    status, body = uwsgi_http_get(server.uwsgi_port, "/status/503", 0)
    assert status == 500


@pytest.mark.skipif(not NGINX_AVAILABLE, reason="nginx is not installed")
def test_routes_behind_nginx_uwsgi_pass(server, tmp_path):
    """The same routes over nginx's uwsgi_pass (modifier1 0, Debian's uwsgi_params): a file
    action, basicauth, a cache route, the response chain, and setmodifier1 to the Lua app."""
    port = free_port()
    conf = uwsgi_pass_conf(tmp_path / "nginx", port, server.uwsgi_port, {"/": 0})
    with Nginx(tmp_path / "nginx", conf, port):
        front = type("Front", (), {"port": port})()
        r = get(front, "/file")
        assert (r.status, r.read()) == (201, b"<p>static page</p>")
        assert get(front, "/private").status == 401
        auth = {"Authorization": "Basic " + base64.b64encode(b"alice:wonder").decode()}
        assert b"REMOTE_USER=alice" in get(front, "/private", auth).read()
        assert get(front, "/set/one").status == 204
        assert b"CACHED=v-one" in get(front, "/getvar").read()
        r = get(front, "/anything")
        assert r.status == 200 and r.getheader("X-Response") == "200" and b"runtime=python" in r.read()
        r = get(front, "/anything", {"X-Runtime": "lua"})
        assert r.status == 200 and b"runtime=lua" in r.read()


def test_fixcl_sends_a_length_for_a_streamed_body(server):
    r = get(server, "/fixcl-stream")
    assert r.getheader("Content-Length") == "11" and r.read() == b"part1-part2"


def test_disableheaders_sends_the_body_alone(server):
    # (uWSGI 2.0 marks the head as sent, and its python plugin's start_response then fails)
    import socket
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as c:
        c.sendall(b"GET /nohead HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := c.recv(65536):
            data += chunk
    assert data.startswith(b"PATH_INFO=/nohead\n") and b"HTTP/1.1" not in data


def test_donotlog(server):
    get(server, "/quiet").read()
    get(server, "/loud-marker").read()
    server.wait_log("GET /loud-marker")
    assert "GET /quiet" not in server.log()


@pytest.mark.parametrize("route,message", [
    (["--route", "^/(x redirect:/"], "--route '^/(x redirect:/': bad regexp"),
    (["--route", "^/x nosuch:1"], "missing router for \"nosuch\""),
    (["--route-if", "nosuch:1 break:"], "unable to find \"nosuch\" route condition"),
    (["--route", "^/x harakiri:10"], "\"harakiri\" route action is not supported"),
])
def test_bad_route_stops_the_start(route, message):
    port = free_port()
    r = run_uwsgi(["--plugins", "cffi", "--http-socket", f"127.0.0.1:{port}", "--wsgi-file",
                   str(HERE / "route_app.py"), *route], timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert message in out and "Traceback" not in out
