"""uwsgid.server.prefork: what the master does before it forks its workers (issue 20). The
memory figures it improves (worker RSS, PSS) are measured in bench/memory.py; here, in process,
each of its two effects."""

from __future__ import annotations

import gc
from types import SimpleNamespace

import pytest
from helpers import UWSGI, Server, free_port, http_get

from uwsgid.server import prefork


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_prepare_freezes_what_was_made_since_the_last_freeze():
    made = [[i] for i in range(1000)]     # tracked by the cyclic GC
    before = gc.get_freeze_count()
    try:
        prefork.prepare(SimpleNamespace(opts=SimpleNamespace()))
        assert gc.get_freeze_count() >= before + len(made)
    finally:
        gc.unfreeze()


def test_prepare_makes_the_workers_settings():
    server = SimpleNamespace(opts=SimpleNamespace(threads=3))
    try:
        prefork.prepare(server)
    finally:
        gc.unfreeze()
    assert server.worker_settings.threads == 3


def test_prepare_gives_mallocs_free_heap_back():
    # 32 MB in 64 KB blocks (under malloc's mmap threshold: they are in its heap), the last one
    # kept so that the heap's top cannot shrink by itself: free() keeps the pages of the others
    blocks = [bytearray(b"x" * 65536) for _ in range(512)]
    keep = blocks.pop()
    del blocks
    gc.collect()
    held = _rss_kb()
    try:
        prefork.prepare(SimpleNamespace(opts=SimpleNamespace()))
        assert held - _rss_kb() > 16 * 1024, "malloc's free memory is still resident after prepare()"
    finally:
        gc.unfreeze()
        del keep


GARBAGE_APP = '''
# at load: 20 MB of temporaries in malloc's heap, every 100th kept (the heap cannot shrink by itself)
junk = [bytes(1000) for _ in range(20000)]
kept = junk[::100]
del junk


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
'''


@pytest.mark.skipif(not UWSGI.exists(), reason="./uwsgi is not built (make build)")
def test_a_worker_does_not_inherit_what_the_apps_load_freed(tmp_path):
    """The master trims before fork: a worker's RSS is ~16 MB here, ~35 MB when it inherits the
    app's 20 MB of freed temporaries. A generous bound, not a precise figure."""
    app = tmp_path / "garbage_app.py"
    app.write_text(GARBAGE_APP)
    port = free_port()
    args = ["--master", "-p", "1", "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", app, "--disable-logging"]
    with Server(args, port) as srv:
        assert http_get(port, "/")[0] == 200
        with open(f"/proc/{srv.pid}/task/{srv.pid}/children") as f:
            [worker] = [int(p) for p in f.read().split()]
        with open(f"/proc/{worker}/status") as f:
            rss_mb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
    assert rss_mb < 28, f"worker RSS {rss_mb:.1f} MB: the app's freed temporaries were inherited"
