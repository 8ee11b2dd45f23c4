"""The static caches through the real ./uwsgi: small files answered from each worker's memory
(no system call but the send within a second, a changed, removed or replaced file answered as such
within a second, conditional/range/HEAD/variant answers from memory), and --static-cache-paths
(the resolved path kept for SECS in a --cache2 cache that the app sees, a hit skipping the
resolution, never leading out of the root, expiring; its start-up errors)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
from helpers import free_port, run_uwsgi
from static_helpers import HELLO, SECRET, needs_binary, python_server, request

pytestmark = needs_binary

CACHED_AFTER = 2.2      # filecache.RACY_SECONDS and a margin: files younger are not kept
APP = '''
import uwsgi

def application(env, start_response):
    op, _, arg = env["QUERY_STRING"].partition("=")
    if op == "get":
        value = uwsgi.cache_get(arg.encode(), "paths")
        body = b"NONE" if value is None else value
    elif op == "set":
        key, _, value = arg.partition("|")
        uwsgi.cache_update(key.encode(), value.encode(), 60, "paths")
        body = b"SET"
    else:
        body = b"Hello World"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
'''


def _tree(tmp):
    www = tmp / "www"
    (www / "box").mkdir(parents=True)
    secret = tmp / "secret"
    secret.mkdir()
    (secret / "secret.txt").write_bytes(SECRET)
    (secret / "d.txt").write_bytes(SECRET)
    files = {"a.txt": b"AAAA\n", "b.txt": b"BBBB\n", "c.txt": b"cccc\n", "gone.txt": b"gone\n",
             "swap.txt": b"swap\n", "box/d.txt": b"in the box\n", "r.txt": b"0123456789",
             "v.js": b"plain js\n", "v.js.gz": b"pretend gzip\n", "p1.txt": b"p1\n", "p2.txt": b"p2\n",
             "p3.txt": b"p3\n", "p4.txt": b"p4\n"}
    for name, data in files.items():
        (www / name).write_bytes(data)
    return www, secret


def _settled(*dirs):
    """Wait until every file under dirs changed more than CACHED_AFTER seconds ago."""
    newest = max(p.lstat().st_ctime for d in dirs for p in d.rglob("*"))
    time.sleep(max(0.0, newest + CACHED_AFTER - time.time()))


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    www, secret = _tree(tmp_path_factory.mktemp("caches"))
    (www.parent / "app.py").write_text(APP)
    _settled(www, secret)
    return www, secret


def _server(www, *args):
    """One process (no master): one worker, one file cache; the app reads and writes the cache."""
    return python_server(free_port(), "--wsgi-file", www.parent / "app.py", "--static-map", f"/s={www}",
                         "--cache2", "name=paths,items=64", "--static-cache-paths-name", "paths", *args,
                         app=False)


@pytest.fixture(scope="module")
def server(tree):
    www, _ = tree
    with _server(www, "--static-gzip-all", "--static-cache-paths", "2") as s:
        yield s


def _app(srv, query):
    return request(srv.port, f"/app?{query}")[2]


def _until(fn, want, timeout=3.0):
    """Poll fn() until it returns want; the seconds it took (fails past timeout)."""
    t0 = time.monotonic()
    while True:
        got = fn()
        if got == want:
            return time.monotonic() - t0
        assert time.monotonic() - t0 < timeout, f"still {got!r} after {timeout} s (want {want!r})"
        time.sleep(0.05)


# ---- the per-worker file cache -----------------------------------------------------------------

@pytest.mark.skipif(not shutil.which("strace"), reason="strace is not installed")
def test_a_small_file_is_answered_from_memory(server, tmp_path):
    assert request(server.port, "/s/c.txt")[2] == b"cccc\n"        # read once, kept
    out = tmp_path / "strace.txt"
    pids = [server.pid, *_children(server.pid)]       # --static-cache-paths turns the master on
    tracer = subprocess.Popen(["strace", "-q", *(f"-p{p}" for p in pids), "-o", str(out), "-e",
                               "trace=open,openat,openat2,stat,lstat,newfstatat,fstat,statx,pread64,read,readlink"],
                              stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)
        if tracer.poll() is not None:
            pytest.skip(f"strace cannot attach here: {tracer.stderr.read().decode()[:200]}")
        t0 = time.time()
        for _ in range(20):
            assert request(server.port, "/s/c.txt")[2] == b"cccc\n"
        seconds = int(time.time()) - int(t0) + 1
        time.sleep(0.3)
    finally:
        tracer.terminate()
        tracer.wait(10)
    trace = out.read_text()
    assert trace.count("GET /s/c.txt") >= 20, trace[-2000:]     # the worker was traced
    opens = [line for line in trace.splitlines() if "c.txt" in line and "GET /s/c.txt" not in line]
    # once per second at most (the check of a new second), not once per request
    assert len(opens) <= seconds, trace[-2000:]


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def test_a_changed_file_is_answered_fresh_within_a_second(server, tree):
    www, _ = tree
    f = www / "a.txt"
    assert request(server.port, "/s/a.txt")[2] == b"AAAA\n"
    assert request(server.port, "/s/a.txt")[2] == b"AAAA\n"
    st = f.stat()
    f.write_bytes(b"ZZZZ\n")                                    # same size, in place
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))            # and the old mtime: only ctime tells
    took = _until(lambda: request(server.port, "/s/a.txt")[2], b"ZZZZ\n")
    assert took < 2.0       # the next second (generous: a busy machine)
    for _ in range(5):
        assert request(server.port, "/s/a.txt")[2] == b"ZZZZ\n"


def test_conditional_range_and_head_answers_from_memory(server):
    for _ in range(2):                     # read from the file, then from memory
        status, h, body = request(server.port, "/s/r.txt")
        assert status == 200 and body == b"0123456789" and h["content-length"] == "10"
        lm = h["last-modified"]
        status, h, body = request(server.port, "/s/r.txt", headers={"If-Modified-Since": lm})
        assert status == 304 and body == b"" and h["last-modified"] == lm
        status, h, body = request(server.port, "/s/r.txt", headers={"Range": "bytes=2-5"})
        assert status == 206 and body == b"2345" and h["content-range"] == "bytes 2-5/10"
        status, h, body = request(server.port, "/s/r.txt", headers={"Range": "bytes=50-"})
        assert status == 416 and h["content-range"] == "bytes */10"
        status, h, body = request(server.port, "/s/r.txt", method="HEAD")
        assert status == 200 and body == b"" and h["content-length"] == "10"


def test_variants_are_kept_apart_by_accept_encoding(server):
    for _ in range(3):
        status, h, body = request(server.port, "/s/v.js", headers={"Accept-Encoding": "gzip"})
        assert body == b"pretend gzip\n" and h["content-encoding"] == "gzip" and h["vary"] == "Accept-Encoding"
        status, h, body = request(server.port, "/s/v.js")
        assert body == b"plain js\n" and "content-encoding" not in h


def test_a_removed_file_goes_to_the_app_within_a_second(server, tree):
    www, _ = tree
    assert request(server.port, "/s/gone.txt")[2] == b"gone\n"
    assert request(server.port, "/s/gone.txt")[2] == b"gone\n"
    (www / "gone.txt").unlink()
    assert _until(lambda: request(server.port, "/s/gone.txt")[2], HELLO) < 2.0


def test_a_file_replaced_by_a_symlink_out_of_the_root_is_refused_within_a_second(server, tree):
    www, secret = tree
    assert request(server.port, "/s/swap.txt")[2] == b"swap\n"
    assert request(server.port, "/s/swap.txt")[2] == b"swap\n"
    (www / "swap.txt").unlink()
    (www / "swap.txt").symlink_to(secret / "secret.txt")
    assert _until(lambda: request(server.port, "/s/swap.txt")[0], 403) < 2.0
    assert SECRET not in request(server.port, "/s/swap.txt")[2]


# ---- --static-cache-paths ----------------------------------------------------------------------

def _key(www, rel):
    return f"{os.path.realpath(www)}/{rel}"      # uWSGI's key: DOCROOT "/" PATH_INFO (after the mountpoint)


def test_the_resolved_path_is_kept_for_secs_in_the_named_cache(server, tree):
    www, _ = tree
    assert request(server.port, "/s/b.txt")[2] == b"BBBB\n"
    assert _app(server, f"get={_key(www, '/b.txt')}") == os.fsencode(os.path.realpath(www / "b.txt"))
    time.sleep(2.3)                                        # --static-cache-paths 2
    assert _app(server, f"get={_key(www, '/b.txt')}") == b"NONE"
    assert request(server.port, "/s/b.txt")[2] == b"BBBB\n"


def test_a_hit_skips_the_resolution(server, tree):
    www, _ = tree
    # an item written by the app maps p1 to p2 (inside the root): served as is, as uWSGI does
    assert _app(server, f"set={_key(www, '/p1.txt')}|{os.path.realpath(www / 'p2.txt')}") == b"SET"
    assert request(server.port, "/s/p1.txt")[2] == b"p2\n"


def test_a_hit_outside_the_root_is_not_served(server, tree):
    www, secret = tree
    assert _app(server, f"set={_key(www, '/p3.txt')}|{os.path.realpath(secret / 'secret.txt')}") == b"SET"
    assert request(server.port, "/s/p3.txt")[2] == b"p3\n"        # resolved again
    assert _app(server, f"get={_key(www, '/p3.txt')}") == os.fsencode(os.path.realpath(www / "p3.txt"))


def test_a_directory_swapped_for_a_symlink_is_not_followed_from_the_cache(tree):
    www, secret = tree
    with _server(www, "--static-cache-paths", "60") as s:
        assert request(s.port, "/s/box/d.txt")[2] == b"in the box\n"
        assert _app(s, f"get={_key(www, '/box/d.txt')}") != b"NONE"
        (www / "box").rename(www / "box.old")
        (www / "box").symlink_to(secret)                   # the item's real path now crosses a symlink
        try:
            assert _until(lambda: request(s.port, "/s/box/d.txt")[0], 403) < 2.0
            assert SECRET not in request(s.port, "/s/box/d.txt")[2]
        finally:
            (www / "box").unlink()
            (www / "box.old").rename(www / "box")


@pytest.mark.parametrize("args,message", [
    (["--static-cache-paths", "5"], "caching of static paths requires uWSGI caching"),
    (["--cache2", "name=one,items=8", "--static-cache-paths", "5", "--static-cache-paths-name", "two"],
     'unable to find cache "two"'),
    (["--cache2", "name=one,items=8", "--static-cache-paths", "-5"], "must be a number of seconds >= 0"),
    (["--cache2", "name=one,items=8", "--static-cache-paths-name", "one"], "has no effect without"),
])
def test_bad_settings_stop_the_start(tree, args, message):
    www, _ = tree
    r = run_uwsgi(["--http-socket", f"127.0.0.1:{free_port()}", "--static-map", f"/s={www}", *args])
    assert r.returncode == 1, r.stdout + r.stderr
    assert message in r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
