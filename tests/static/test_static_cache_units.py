"""In-process checks of the static caches: --static-cache-paths in the mapping (what a hit skips,
what a stale item cannot do), the per-worker file cache's rules, and the header blocks of static
responses kept out of the request layer's shared cache (uwsgid/net/request.py)."""

from __future__ import annotations

import os
import time

import pytest

from uwsgid.net import request as request_mod
from uwsgid.net.request import HeaderBlock, Request
from uwsgid.static import filecache, pathcache
from uwsgid.static.mapping import REFUSED, Mapper
from uwsgid.static.mime import MimeTable
from uwsgid.static.serve import Static


class FakeCache:
    """A uWSGI cache as the services hand it to static: get/set/delete with expiry in seconds."""

    def __init__(self):
        self.items = {}

    def get(self, key):
        item = self.items.get(key)
        if item is None or (item[1] and item[1] < time.monotonic()):
            return None
        return item[0]

    def set(self, key, value, expires=0, update=False):
        self.items[key] = (value, time.monotonic() + expires if expires else 0)
        return True

    def delete(self, key):
        return self.items.pop(key, None) is not None


@pytest.fixture
def tree(tmp_path):
    www = tmp_path / "www"
    (www / "sub").mkdir(parents=True)
    (www / "a.txt").write_bytes(b"a\n")
    (www / "b.txt").write_bytes(b"b\n")
    (www / "sub" / "index.html").write_bytes(b"index\n")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "a.txt").write_bytes(b"secret\n")
    return www, secret


@pytest.fixture
def counted(monkeypatch):
    """Counts the resolution's system calls: open() by path, and the /proc readlink."""
    calls = {"open": [], "readlink": []}
    real_open, real_readlink = os.open, os.readlink

    def open_(path, *a, **kw):
        calls["open"].append(path)
        return real_open(path, *a, **kw)

    def readlink(path, *a, **kw):
        calls["readlink"].append(path)
        return real_readlink(path, *a, **kw)
    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "readlink", readlink)
    return calls


def _mapper(www, secs=30, cache=None, **opts):
    cache = cache or FakeCache()
    m = Mapper({"static-map": [f"/s={www}"], **opts})
    m.paths = pathcache.PathCache(cache, secs, "test")
    m.resolve()
    return m, cache


def _close(found):
    if found not in (None, REFUSED):
        os.close(found.fd)


def test_a_resolution_is_stored_and_a_hit_skips_it(tree, counted):
    www, _ = tree
    m, cache = _mapper(www)
    key = os.fsencode(os.path.realpath(www)) + b"//a.txt"     # uWSGI's key: DOCROOT "/" PATH_INFO
    f = m.find(b"/s/a.txt", {})
    _close(f)
    assert cache.get(key) == os.fsencode(os.path.realpath(www / "a.txt"))
    assert counted["open"] == [key] and len(counted["readlink"]) == 1
    counted["open"].clear()
    counted["readlink"].clear()
    m._known.clear()                # as in another worker: nothing remembered in this process
    f = m.find(b"/s/a.txt", {})
    assert os.pread(f.fd, 10, 0) == b"a\n"
    _close(f)
    assert key not in counted["open"] and counted["readlink"] == []    # not resolved again
    assert m.paths.hits == 1


def test_a_hit_is_trusted_for_its_file_as_uwsgi_does(tree):
    www, _ = tree
    m, cache = _mapper(www)
    base = os.fsencode(os.path.realpath(www))
    cache.set(base + b"//a.txt", base + b"/b.txt", 30)       # e.g. written by an app
    f = m.find(b"/s/a.txt", {})
    assert os.pread(f.fd, 10, 0) == b"b\n"
    _close(f)


def test_a_hit_outside_the_root_is_dropped_and_the_path_resolved(tree):
    www, secret = tree
    m, cache = _mapper(www)
    base = os.fsencode(os.path.realpath(www))
    cache.set(base + b"//a.txt", os.fsencode(os.path.realpath(secret / "a.txt")), 30)
    f = m.find(b"/s/a.txt", {})
    assert os.pread(f.fd, 10, 0) == b"a\n"
    _close(f)
    assert cache.get(base + b"//a.txt") == base + b"/a.txt"


def test_a_stale_item_does_not_follow_a_symlink_out_of_the_root(tree):
    www, secret = tree
    m, cache = _mapper(www)
    _close(m.find(b"/s/a.txt", {}))
    (www / "a.txt").unlink()
    (www / "a.txt").symlink_to(secret / "a.txt")              # the file replaced by a symlink out
    assert m.find(b"/s/a.txt", {}) is REFUSED


@pytest.mark.skipif(not pathcache._setup_openat2(), reason="no openat2 here: only the last component is checked")
def test_a_stale_item_does_not_follow_a_directory_swapped_for_a_symlink(tree):
    www, secret = tree
    (secret / "sub").mkdir()
    (secret / "sub" / "index.html").write_bytes(b"secret index\n")
    (secret / "sub" / "x.txt").write_bytes(b"secret x\n")
    (www / "sub" / "x.txt").write_bytes(b"x\n")
    m, cache = _mapper(www)
    _close(m.find(b"/s/sub/x.txt", {}))
    (www / "sub").rename(www / "sub.old")
    (www / "sub").symlink_to(secret / "sub")                  # a directory on the real path, swapped
    assert m.find(b"/s/sub/x.txt", {}) is REFUSED


def test_a_removed_file_drops_its_item(tree):
    www, _ = tree
    m, cache = _mapper(www)
    _close(m.find(b"/s/a.txt", {}))
    (www / "a.txt").unlink()
    assert m.find(b"/s/a.txt", {}) is None
    assert cache.items == {}


def test_items_expire_after_secs(tree):
    www, _ = tree
    m, cache = _mapper(www, secs=1)
    _close(m.find(b"/s/a.txt", {}))
    base = os.fsencode(os.path.realpath(www))
    assert cache.get(base + b"//a.txt") is not None
    time.sleep(1.1)
    assert cache.get(base + b"//a.txt") is None


def test_a_directory_keeps_its_index_file(tree, counted):
    www, _ = tree
    m, cache = _mapper(www, **{"static-index": ["index.html"]})
    _close(m.find(b"/s/sub", {}))
    base = os.fsencode(os.path.realpath(www))
    assert cache.get(base + b"//sub") == base + b"/sub/index.html"
    counted["open"].clear()
    f = m.find(b"/s/sub", {})
    assert os.pread(f.fd, 10, 0) == b"index\n"
    _close(f)
    assert counted["open"] == []        # neither the directory nor the index name searched


@pytest.mark.parametrize("opts,message", [
    ({"static-cache-paths": -1}, "must be a number of seconds >= 0"),
    ({"static-cache-paths": "x"}, "not a number of seconds"),
    ({"static-cache-paths-name": "paths"}, "has no effect without --static-cache-paths"),
])
def test_bad_settings(opts, message):
    with pytest.raises(pathcache.PathCacheError, match=message):
        pathcache.PathCache.from_options(opts)


def test_the_cache_is_found_by_name_or_refused(monkeypatch):
    caches = {b"paths": FakeCache()}

    def lookup(name):
        if name is None:
            raise ValueError("no cache configured")
        if name not in caches:
            raise ValueError(f"no cache named {name!r}")
        return caches[name]
    monkeypatch.setattr(pathcache, "_provider", lookup)
    pc = pathcache.PathCache.from_options({"static-cache-paths": 5, "static-cache-paths-name": "paths"})
    assert pc.cache is caches[b"paths"] and pc.secs == 5
    with pytest.raises(pathcache.PathCacheError, match='unable to find cache "nope"'):
        pathcache.PathCache.from_options({"static-cache-paths": 5, "static-cache-paths-name": "nope"})
    with pytest.raises(pathcache.PathCacheError, match="requires uWSGI caching"):
        pathcache.PathCache.from_options({"static-cache-paths": 5})
    assert pathcache.PathCache.from_options({}) is None


def test_open_no_symlinks(tmp_path):
    (tmp_path / "f").write_bytes(b"f")
    (tmp_path / "l").symlink_to(tmp_path / "f")
    os.close(pathcache.open_no_symlinks(os.fsencode(tmp_path / "f")))
    for bad in (tmp_path / "l", tmp_path / "missing"):
        with pytest.raises(OSError):
            pathcache.open_no_symlinks(os.fsencode(bad))
    with pytest.raises(OSError):
        pathcache.open_no_symlinks(os.fsencode(tmp_path / "f") + b"\0x")


# ---- the file cache's rules ------------------------------------------------------------------

class _St:
    def __init__(self, size, ctime):
        self.st_size = size
        self.st_ctime = ctime


def test_a_recently_changed_file_or_a_short_read_is_not_kept():
    fc = filecache.FileCache()
    now = time.time()
    lm = (b"Last-Modified", b"x")
    assert fc.keep(b"/a", _St(3, now - 0.5), now, b"abc", 0, [], lm) is None       # changed 0.5 s ago
    assert fc.keep(b"/a", _St(4, now - 10), now, b"abc", 0, [], lm) is None        # shrank while read
    e = fc.keep(b"/a", _St(3, now - 10), now, b"abc", 0, [], lm)
    assert fc.get(b"/a", int(now)) is e and fc.get(b"/a", int(now) + 1) is None    # this second only


def test_the_file_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(filecache, "MAX_BYTES", 10_000)
    fc = filecache.FileCache()
    now = time.time()
    body = b"x" * 600
    for i in range(40):
        fc.keep(b"/f%d" % i, _St(600, 0), now, body, 0, [], (b"Last-Modified", b"x"))
    assert fc.size <= 10_000 and fc.size == 600 * len(fc.entries)
    assert b"/f39" in fc.entries and b"/f0" not in fc.entries        # the oldest went first
    fc.drop(b"/f39")
    assert fc.size == 600 * len(fc.entries)


def test_the_key_holds_what_decides_the_answer():
    v = {b"DOCUMENT_ROOT": b"/d", b"HTTP_ACCEPT_ENCODING": b"gzip", b"REQUEST_URI": b"/a?v=1"}
    assert filecache.FileCache().key(b"/a", v) == b"/a"
    k1 = filecache.FileCache(by_encoding=True).key(b"/a", v)
    k2 = filecache.FileCache(by_encoding=True).key(b"/a", {**v, b"HTTP_ACCEPT_ENCODING": b"br"})
    assert k1 != k2
    assert filecache.FileCache(by_uri=True, by_docroot=True).key(b"/a", v) == (b"/a", b"/d", None, b"/a?v=1")


# ---- static headers and the request layer's header-block cache -------------------------------

class _Conn:
    is_http = True
    closed = False
    out = None
    fd = -1
    peer = "test"

    def __init__(self):
        self.sent = []

    def send(self, data):
        self.sent.append(bytes(data))

    send_last = send

    def worker_stopping(self):
        return False


class _Worker:
    scoreboard = None
    id = 1


class _Core:
    worker = _Worker()
    id = 0
    request = None

    def finish(self):
        self.request.flush(True)


def test_static_headers_stay_out_of_the_apps_header_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(request_mod, "_BLOCKS_HTTP", {})
    for i in range(300):
        (tmp_path / f"f{i}.txt").write_bytes(b"file %d\n" % i)
    static = Static({"static-map": [f"/s={tmp_path}"]}, mime=MimeTable({b"txt": b"text/plain"}))
    static.mapper.resolve()
    core, conn = _Core(), _Conn()
    for i in range(300):
        req = Request(conn, {b"PATH_INFO": b"/s/f%d.txt" % i}, method=b"GET", keepalive=True)
        core.request = req
        assert static.serve(core, req)
        assert conn.sent[-1].endswith(b"\r\n\r\nfile %d\n" % i)
        assert b"Content-Length: %d\r\n" % len(b"file %d\n" % i) in conn.sent[-1]
    assert request_mod._BLOCKS_HTTP == {}
    app = Request(conn, {}, method=b"GET", keepalive=True)
    app.start_response(b"200 OK", [(b"Content-Type", b"text/html")])
    app.write(b"hi")
    app.flush(True)
    assert len(request_mod._BLOCKS_HTTP) == 1       # the app's set still gets its slot


def test_a_header_block_is_used_as_built():
    hb = HeaderBlock([(b"Content-Type", b"text/plain"), (b"Content-Length", b"2")])
    assert hb.length == 2
    conn = _Conn()
    req = Request(conn, {}, method=b"HEAD", keepalive=True)
    req.start_response(b"200 OK", hb)
    req.write(b"ok")
    req.flush(True)
    assert conn.sent == [b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n"]
