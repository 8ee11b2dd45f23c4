"""What the caches hold when the instance starts (uWSGI's uwsgi_cache_init): --add-cache-item
"[CACHE ]KEY=VALUE", --load-file-in-cache[-gzip] "[CACHE ]PATH" (a named cache only, else every
cache), and the legacy --cache N with --cache-store PATH keeping its content across restarts."""

from __future__ import annotations

import gzip
import json

from helpers import Server, free_port, http_get

APP = '''
import json, uwsgi
def application(env, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    out = {}
    for cache in ("a", "b"):
        for key in uwsgi.cache_keys(cache):
            out[cache + ":" + key.decode()] = uwsgi.cache_get(key, cache).hex()
    return [json.dumps(out).encode()]
'''

LEGACY = '''
import uwsgi
def application(env, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    if env["PATH_INFO"] == "/set":
        uwsgi.cache_update("kept", b"across restarts")
    return [uwsgi.cache_get("kept") or b"nothing"]
'''


def test_preloaded_items_and_files(tmp_path):
    (tmp_path / "app.py").write_text(APP)
    page = tmp_path / "page.html"
    page.write_bytes(b"<p>hello</p>" * 10)
    port = free_port()
    args = ["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", tmp_path / "app.py",
            "--cache2", "name=a,items=10", "--cache2", "name=b,items=10",
            "--add-cache-item", "b only-b=2", "--add-cache-item", "everywhere=1",
            "--add-cache-item", "missing-equals", "--load-file-in-cache", f"a {page}",
            "--load-file-in-cache-gzip", f"b {page}", "--load-file-in-cache", f"{tmp_path}/nope"]
    with Server(args, port) as s:
        got = json.loads(http_get(port, "/")[2])
        log = s.log()
    got = {k: bytes.fromhex(v) for k, v in got.items()}
    assert got.pop("a:everywhere") == got.pop("b:everywhere") == b"1"
    assert got.pop("b:only-b") == b"2"
    assert got.pop(f"a:{page}") == page.read_bytes()
    assert gzip.decompress(got.pop(f"b:{page}")) == page.read_bytes()
    assert got == {}
    assert f'[cache] stored "{page}" in "a"' in log and f'[cache-gzip] stored "{page}" in "b"' in log
    assert "[cache] unable to store item missing-equals" in log
    assert f'[cache-error] unable to read file "{tmp_path}/nope"' in log


def test_legacy_cache_store(tmp_path):
    (tmp_path / "app.py").write_text(LEGACY)
    store = tmp_path / "legacy.cache"
    for round_ in range(2):
        port = free_port()
        args = ["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", tmp_path / "app.py", "--cache", "8",
                "--cache-store", store]
        with Server(args, port):
            if round_ == 0:
                assert http_get(port, "/")[2] == b"nothing"
                assert http_get(port, "/set")[2] == b"across restarts"
            else:
                assert http_get(port, "/")[2] == b"across restarts"
    assert store.stat().st_size > 0
