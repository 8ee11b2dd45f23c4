"""Static files through the real ./uwsgi (--http-socket, the Python app behind): each option and
each behaviour of a file response: the maps and their order, check-static, the index, skip-ext,
the MIME table, Last-Modified / If-Modified-Since, HEAD, Range, Expires, the gzip variants,
--file-serve-mode, the request log and the stats counter."""

from __future__ import annotations

import calendar
import gzip
import re
import time
from email.utils import formatdate, parsedate

import pytest
from helpers import free_port, run_uwsgi
from static_helpers import (
    CSS,
    HELLO,
    INDEX,
    JS,
    core_counter,
    make_tree,
    needs_binary,
    python_server,
    request,
    request_lines,
    stats,
    touch,
)

pytestmark = needs_binary

MTIME = 1_700_000_000       # Tue, 14 Nov 2023 22:13:20 GMT
LM = "Tue, 14 Nov 2023 22:13:20 GMT"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    t = make_tree(tmp_path_factory.mktemp("static"))
    for p in t["www"].rglob("*"):
        if p.is_file() and not p.is_symlink():
            touch(p, MTIME)
    return t


@pytest.fixture(scope="module")
def srv(tree, tmp_path_factory):
    """One server for the plain behaviours: a map with an index, the app behind it."""
    port = free_port()
    log = tmp_path_factory.mktemp("log") / "uwsgi.log"
    www = tree["www"]
    s = python_server(port, "--static-map", f"/s={www}", "--static-index", "index.html", "-M",
                      "--stats", f"127.0.0.1:{(sp := free_port())}", log_path=log)
    s.stats_port = sp
    with s:
        yield s


def test_a_mapped_file_is_served_with_its_type_length_and_date(srv):
    status, h, body = request(srv.port, "/s/a.css")
    assert status == 200, srv.log()
    assert body == CSS
    assert h["content-type"] == "text/css"               # /etc/mime.types
    assert h["content-length"] == str(len(CSS))
    assert h["last-modified"] == LM
    assert "expires" not in h and "content-encoding" not in h


def test_what_is_not_a_file_goes_to_the_app(srv):
    assert request(srv.port, "/s/missing.css")[2] == HELLO        # not found: the app
    assert request(srv.port, "/other/a.css")[2] == HELLO          # not under the mountpoint
    assert request(srv.port, "/s/noindex/")[2] == HELLO           # a directory without an index
    assert request(srv.port, "/s/a.css", method="POST", headers={"Content-Length": "0"})[2] == HELLO


def test_the_index_of_a_directory(srv):
    for path in ("/s/sub/", "/s/sub"):
        status, h, body = request(srv.port, path)
        assert (status, body, h["content-type"]) == (200, INDEX, "text/html"), path


def test_head_sends_the_head_only(srv):
    status, h, rest = request(srv.port, "/s/a.css", method="HEAD")
    assert status == 200 and h["content-length"] == str(len(CSS)) and h["last-modified"] == LM
    assert rest == b""


def test_if_modified_since(srv):
    # at or after the file's mtime: 304 without a body; before it (or not a date): the file
    for ims, want in ((LM, 304), ("Wed, 15 Nov 2023 00:00:00 GMT", 304), ("Mon, 13 Nov 2023 00:00:00 GMT", 200),
                      ("Tuesday, 14-Nov-23 22:13:20 GMT", 304), ("garbage", 200)):
        status, h, body = request(srv.port, "/s/a.css", headers={"If-Modified-Since": ims})
        assert status == want, ims
        assert body == (b"" if want == 304 else CSS)
        if want == 304:
            assert "content-length" not in h and h["last-modified"] == LM


def test_ranges(srv):
    def get(rng, **extra):
        return request(srv.port, "/s/plain.txt", headers={"Range": rng, **extra})
    status, h, body = get("bytes=2-5")
    assert (status, body, h["content-range"], h["content-length"]) == (206, b"2345", "bytes 2-5/20", "4")
    assert get("bytes=15-")[2] == b"fghij"
    assert get("bytes=-3")[2] == b"hij"
    assert get("bytes=18-100")[1]["content-range"] == "bytes 18-19/20"
    assert get("bytes=2-3,6-7")[2] == b"23"                         # the first range, as uWSGI
    status, h, body = get("bytes=20-")
    assert (status, h["content-range"], body) == (416, "bytes */20", b"")
    for whole in ("bytes=0-", "bytes=0-19", "bytes=-100", "lines=1-2", "bytes=5-2", "bytes=x-y"):
        status, h, body = get(whole)
        assert (status, body) == (200, b"0123456789abcdefghij"), whole
        assert "content-range" not in h
    assert get("bytes=2-5", **{"If-Range": LM})[0] == 206
    assert get("bytes=2-5", **{"If-Range": "Mon, 13 Nov 2023 00:00:00 GMT"})[0] == 200
    assert get("bytes=2-5", **{"If-Range": '"an-etag"'})[0] == 200
    # an empty file: any range is the whole (empty) file
    status, h, body = request(srv.port, "/s/empty.txt", headers={"Range": "bytes=0-"})
    assert (status, body, h["content-length"]) == (200, b"", "0")


def test_head_of_a_range(srv):
    status, h, rest = request(srv.port, "/s/plain.txt", method="HEAD", headers={"Range": "bytes=2-5"})
    assert (status, h["content-length"], h["content-range"], rest) == (206, "4", "bytes 2-5/20", b"")


def test_keep_alive_goes_on_after_static_responses(srv):
    import socket

    from helpers import read_response
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        f = s.makefile("rb")
        for path in ("/s/a.css", "/s/plain.txt", "/", "/s/sub/"):
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            status, h, _ = read_response(f)
            assert status == 200 and h.get("connection") != "close", path
        # pipelined
        s.sendall(b"GET /s/a.css HTTP/1.1\r\nHost: x\r\n\r\nGET /s/plain.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(f)[2] == CSS
        assert read_response(f)[2] == b"0123456789abcdefghij"


def test_the_request_log_and_the_stats_count_static_requests(srv):
    before = core_counter(stats(srv.stats_port), "static_requests")
    request(srv.port, "/s/page.html")
    request(srv.port, "/s/page.html", method="HEAD")
    request(srv.port, "/s/page.html", headers={"If-Modified-Since": LM})     # a 304 is not counted (uWSGI)
    request(srv.port, "/")                                                     # the app's
    deadline = time.monotonic() + 5
    while core_counter(stats(srv.stats_port), "static_requests") < before + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert core_counter(stats(srv.stats_port), "static_requests") == before + 2
    lines = request_lines(srv.log(), "/s/page.html")
    assert len(lines) == 3
    assert all("|app: -1|" in line for line in lines), lines
    # as uWSGI 2.0 logs a static file: its body went "via sendfile()"; a HEAD sent none
    assert re.search(r"GET /s/page\.html => generated 12 bytes in \d+ msecs via sendfile\(\) \(HTTP/1\.1 200\)",
                     lines[0]), lines[0]
    assert re.search(r"HEAD /s/page\.html => generated 0 bytes in \d+ msecs \(HTTP/1\.1 200\)", lines[1]), lines[1]
    assert "(HTTP/1.1 304)" in lines[2]


def test_start_up_lines(srv):
    log = srv.log()
    assert "building mime-types dictionary from file /etc/mime.types..." in log
    assert re.search(r"\.\.\.\d+ entry found", log)
    assert "[uwsgi-static] added mapping for /s => " in log


# ---- one server per option ---------------------------------------------------------------------

def _serve(tree, *args, app=True):
    return python_server(free_port(), *args, app=app)


def test_static_maps_longest_prefix_first_then_in_order(tree, tmp_path):
    www = tree["www"]
    other = tmp_path / "deep"
    other.mkdir()
    (other / "d.txt").write_bytes(b"from the longer map\n")
    (tmp_path / "first").mkdir()
    (tmp_path / "first" / "only-first.txt").write_bytes(b"first\n")
    with _serve(tree, "--static-map", f"/s={www}", "--static-map", f"/s/sub/deep={other}",
                "--static-map", f"/x={tmp_path / 'first'}", "--static-map", f"/x={www}") as s:
        # /s/sub/deep/d.txt exists in both: the longer mountpoint wins (declared after)
        assert request(s.port, "/s/sub/deep/d.txt")[2] == b"from the longer map\n"
        # not in the longer map's dir: the next map (the shorter mountpoint)
        assert request(s.port, "/s/sub/index.html")[2] == INDEX
        # one mountpoint, several dirs: in the order given
        assert request(s.port, "/x/only-first.txt")[2] == b"first\n"
        assert request(s.port, "/x/a.css")[2] == CSS
        assert request(s.port, "/x/none.css")[2] == HELLO


def test_static_map2_appends_the_whole_path(tree):
    tmp = tree["tmp"]
    with _serve(tree, "--static-map2", f"/www={tmp}") as s:
        status, _, body = request(s.port, "/www/a.css")          # tmp + /www/a.css
        assert (status, body) == (200, CSS)
        assert request(s.port, "/www/sub/deep/d.txt")[2] == b"deep\n"


def test_a_map_to_a_file(tree):
    f = tree["www"] / "page.html"
    with _serve(tree, "--static-map", f"/favicon.ico={f}") as s:
        assert request(s.port, "/favicon.ico")[2] == b"<p>page</p>\n"


def test_check_static_dirs_in_order(tree, tmp_path):
    (tmp_path / "a.css").write_bytes(b"shadowing\n")
    (tmp_path / "mine.txt").write_bytes(b"mine\n")
    with _serve(tree, "--check-static", str(tmp_path), "--static-check", str(tree["www"])) as s:
        assert request(s.port, "/a.css")[2] == b"shadowing\n"      # the first dir holding it
        assert request(s.port, "/mine.txt")[2] == b"mine\n"
        assert request(s.port, "/plain.txt")[2] == b"0123456789abcdefghij"
        assert request(s.port, "/")[2] == HELLO                    # a directory, no index: the app
        assert request(s.port, "/nothing")[2] == HELLO


def test_several_static_index_files(tree, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "home.html").write_bytes(b"home\n")
    (d / "index.htm").write_bytes(b"htm\n")
    with _serve(tree, "--static-map", f"/d={d}", "--static-index", "index.html",
                "--static-index", "index.htm", "--static-index", "home.html") as s:
        assert request(s.port, "/d/")[2] == b"htm\n"               # the first that exists
        (d / "index.htm").unlink()
        assert request(s.port, "/d/")[2] == b"home\n"


def test_static_skip_ext(tree):
    www = tree["www"]
    with _serve(tree, "--static-map", f"/s={www}", "--static-skip-ext", ".php", "--static-skip-ext", ".weird",
                "--static-index", "app.php") as s:
        assert request(s.port, "/s/app.php")[2] == HELLO           # the app gets it
        assert request(s.port, "/s/data.weird")[2] == HELLO
        assert request(s.port, "/s/")[2] == HELLO                  # index.php is skipped too
        assert request(s.port, "/s/a.css")[2] == CSS


def test_mime_file(tree, tmp_path):
    types = tmp_path / "types"
    types.write_text("# comment\ntext/x-weird    weird  wrd\ntext/x-first css\n")
    www = tree["www"]
    with _serve(tree, "--static-map", f"/s={www}", "--mime-file", str(types), "--mimefile", "/etc/mime.types") as s:
        assert request(s.port, "/s/data.weird")[1]["content-type"] == "text/x-weird"
        assert request(s.port, "/s/a.css")[1]["content-type"] == "text/x-first"   # the first file wins
        assert request(s.port, "/s/sub/index.html")[1]["content-type"] == "text/html"
        assert request(s.port, "/s/UPPER.CSS")[1]["content-type"] == "text/x-first"
        log = s.log()
    assert f"building mime-types dictionary from file {types}...3 entry found" in log
    assert "building mime-types dictionary from file /etc/mime.types..." in log


def test_a_file_of_unknown_type_has_no_content_type(tree, tmp_path):
    types = tmp_path / "types"
    types.write_text("text/css css\n")
    with _serve(tree, "--static-map", f"/s={tree['www']}", "--mime-file", str(types)) as s:
        status, h, body = request(s.port, "/s/data.weird")
        assert status == 200 and "content-type" not in h and body == b"no type\n"


def test_a_missing_mime_file_is_said(tree, tmp_path):
    with _serve(tree, "--static-map", f"/s={tree['www']}", "--mime-file", str(tmp_path / "nope")) as s:
        assert request(s.port, "/s/a.css")[1]["content-type"] == "text/css"    # the built-in table
        log = s.log()
    assert f"!!! no {tmp_path / 'nope'} file found !!!" in log
    assert "built-in types" in log


def _expires(h) -> int:
    return calendar.timegm(parsedate(h["expires"]))


def test_expires_rules(tree):
    www = tree["www"]
    with _serve(tree, "--static-map", f"/s={www}", "--static-index", "index.html",
                "--static-expires-type", "text/css=3600",
                "--static-expires-type-mtime", "text/html=60",
                "--static-expires-uri", r"\.txt$ 7200",
                "--static-expires-uri-mtime", r"^/s/sub/$=120",
                "--static-expires", r"/gz/.*\.js$ 86400",
                "--static-expires-mtime", r"only\.js$ 5",
                "--static-expires-path-info", r"^/s/empty 10",
                "--static-expires-path-info-mtime", r"^/s/UPPER 20") as s:
        now = time.time()
        assert abs(_expires(request(s.port, "/s/a.css")[1]) - (now + 3600)) < 5
        assert _expires(request(s.port, "/s/page.html")[1]) == MTIME + 60
        assert abs(_expires(request(s.port, "/s/plain.txt")[1]) - (now + 7200)) < 5
        assert _expires(request(s.port, "/s/sub/")[1]) == MTIME + 120         # REGEX=SECS read too
        assert abs(_expires(request(s.port, "/s/gz/app.js")[1]) - (now + 86400)) < 5
        # the file's path rules come first (uWSGI's order): only.js matches "/gz/.*\.js$" first
        assert abs(_expires(request(s.port, "/s/gz/only.js")[1]) - (now + 86400)) < 5
        assert abs(_expires(request(s.port, "/s/empty.txt")[1]) - (now + 10)) < 5
        assert _expires(request(s.port, "/s/UPPER.CSS")[1]) == MTIME + 20
        assert "expires" not in request(s.port, "/s/data.weird")[1]
        assert formatdate(MTIME + 20, usegmt=True) == request(s.port, "/s/UPPER.CSS")[1]["expires"]


def test_gzip_all(tree):
    www = tree["www"]
    with _serve(tree, "--static-map", f"/s={www}", "--static-gzip-all") as s:
        status, h, body = request(s.port, "/s/gz/app.js", headers={"Accept-Encoding": "gzip, deflate"})
        assert status == 200 and h["content-encoding"] == "gzip" and gzip.decompress(body) == JS
        assert h["content-type"] == "text/javascript" and h["vary"] == "Accept-Encoding"
        assert h["content-length"] == str(len(body))
        status, h, body = request(s.port, "/s/gz/app.js")                  # no Accept-Encoding
        assert body == JS and "content-encoding" not in h and h["vary"] == "Accept-Encoding"
        status, h, body = request(s.port, "/s/gz/app.js", headers={"Accept-Encoding": "gzip;q=0"})
        assert body == JS
        status, h, body = request(s.port, "/s/gz/only.js", headers={"Accept-Encoding": "gzip"})   # no .gz
        assert body == JS and "content-encoding" not in h
        status, h, body = request(s.port, "/s/gz/app.js", headers={"Accept-Encoding": "br, gzip"})
        assert h["content-encoding"] == "br" and body == b"pretend-brotli"     # br first, as uWSGI
        # a range of the variant
        status, h, body = request(s.port, "/s/gz/app.js", headers={"Accept-Encoding": "gzip", "Range": "bytes=0-1"})
        assert status == 206 and body == b"\x1f\x8b" and h["content-encoding"] == "gzip"
        # a .gz that is a symlink out of the root is not used
        status, h, body = request(s.port, "/s/gz/evil.js", headers={"Accept-Encoding": "gzip"})
        assert body == JS and "content-encoding" not in h


def test_gzip_dir_and_ext(tree):
    www = tree["www"]
    with _serve(tree, "--static-map", f"/s={www}", "--static-gzip-dir", str(www / "gz")) as s:
        assert request(s.port, "/s/gz/app.js", headers={"Accept-Encoding": "gzip"})[1]["content-encoding"] == "gzip"
    with _serve(tree, "--static-map", f"/s={www}", "--static-gzip-prefix", str(www / "sub")) as s:
        h = request(s.port, "/s/gz/app.js", headers={"Accept-Encoding": "gzip"})[1]
        assert "content-encoding" not in h and "vary" not in h
    with _serve(tree, "--static-map", f"/s={www}", "--static-gzip-ext", ".js") as s:
        assert request(s.port, "/s/gz/app.js", headers={"Accept-Encoding": "gzip"})[1]["content-encoding"] == "gzip"
    with _serve(tree, "--static-map", f"/s={www}", "--static-gzip", r"app\.js$") as s:
        assert request(s.port, "/s/gz/app.js", headers={"Accept-Encoding": "gzip"})[1]["content-encoding"] == "gzip"


@pytest.mark.parametrize("mode,header", [("x-sendfile", "x-sendfile"), ("xsendfile", "x-sendfile"),
                                         ("x-accel-redirect", "x-accel-redirect"), ("nginx", "x-accel-redirect")])
def test_file_serve_mode(tree, mode, header):
    www = tree["www"]
    with _serve(tree, "--static-map", f"/s={www}", "--file-serve-mode", mode) as s:
        status, h, body = request(s.port, "/s/a.css")
        assert status == 200 and body == b""
        assert h[header] == str((www / "a.css").resolve())
        assert h["content-type"] == "text/css" and h["last-modified"] == LM
        assert request(s.port, "/s/a.css", headers={"If-Modified-Since": LM})[0] == 304
        assert request(s.port, "/s/a.css", headers={"Range": "bytes=0-1"})[0] == 200   # the front end's job


def test_file_serve_mode_default_sends_the_file(tree):
    with _serve(tree, "--static-map", f"/s={tree['www']}", "--file-serve-mode", "default") as s:
        assert request(s.port, "/s/a.css")[2] == CSS


@pytest.mark.parametrize("args,message", [
    (["--static-map", "/nodir"], "--static-map /nodir: invalid document root in static map"),
    (["--static-map", "/s=/tmp", "--file-serve-mode", "carrier-pigeon"], "--file-serve-mode carrier-pigeon: unknown mode"),
    (["--static-map", "/s=/tmp", "--static-expires-uri", "nosecs"], "--static-expires-uri nosecs: syntax is REGEX SECS"),
    (["--static-map", "/s=/tmp", "--static-expires-type", "text/css=soon"], "is not a number of seconds"),
    (["--static-map", "/s=/tmp", "--static-gzip", "(unclosed"], "invalid regular expression"),
])
def test_bad_values_stop_the_start(args, message):
    r = run_uwsgi(["--http-socket", f"127.0.0.1:{free_port()}", *args])
    assert r.returncode == 1, r.stdout + r.stderr
    assert message in r.stdout + r.stderr


def test_a_missing_root_is_said_and_used_once_it_exists(tree, tmp_path):
    later = tmp_path / "later"
    with _serve(tree, "--static-map", f"/l={later}") as s:
        assert request(s.port, "/l/x.txt")[2] == HELLO
        later.mkdir()
        (later / "x.txt").write_bytes(b"now\n")
        assert request(s.port, "/l/x.txt")[2] == b"now\n"
        assert "does not exist (yet)" in s.log()


def test_without_a_static_option_nothing_changes(tree):
    with _serve(tree) as s:
        assert request(s.port, "/s/a.css")[2] == HELLO
        assert "mime-types" not in s.log()


def test_a_static_map_answers_without_any_app(tree):
    with _serve(tree, "--static-map", f"/s={tree['www']}", app=False) as s:
        assert request(s.port, "/s/a.css")[2] == CSS
        assert request(s.port, "/other")[0] == 503              # no app: as before


def test_check_static_docroot(tree):
    from static_helpers import uwsgi_get
    port = free_port()
    with python_server(port, "--check-static-docroot", proto="uwsgi") as s:
        status, _, body = uwsgi_get(s.port, "/a.css", DOCUMENT_ROOT=str(tree["www"]))
        assert (status, body) == (200, CSS)
        assert uwsgi_get(s.port, "/a.css")[2] == HELLO           # no DOCUMENT_ROOT: the app
        assert uwsgi_get(s.port, "/out.txt", DOCUMENT_ROOT=str(tree["www"]))[0] == 403
