"""The per-core cost of Lua under --async: the async cores of a thread share its lua_State, so
64 cores cost about what 1 does. A generous bound on the worker's private memory (issue 20's
figures, ~0.2 KB a core against ~230 KB when each core had a state of its own, live in
bench/memory.py): a regression to a state per core adds ~14 MB here and fails."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import EXAMPLES, UWSGI, Server, free_port, http_get

pytestmark = pytest.mark.skipif(not UWSGI.exists(), reason="./uwsgi is not built (make build)")

PIPPO = EXAMPLES / "pippo.lua"
BOUND_MB = 3.0      # 63 extra cores; one lua_State each would be ~14 MB


def _private_dirty_mb(pid: int) -> float:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Private_Dirty:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no Private_Dirty in smaps_rollup")


def _worker_private_dirty(cores: int) -> float:
    port = free_port()
    args = ["--master", "-p", "1", "--async", cores, "--http-socket", f"127.0.0.1:{port}",
            "--http-socket-modifier1", "6", "--lua", PIPPO, "--disable-logging"]
    with Server(args, port) as srv:
        # 64 requests at once, several rounds: every core serves (and its slot is used)
        with ThreadPoolExecutor(64) as pool:
            for _ in range(4):
                answers = list(pool.map(lambda _: http_get(port, "/"), range(64)))
                assert all(a[0] == 200 for a in answers)
        with open(f"/proc/{srv.pid}/task/{srv.pid}/children") as f:
            workers = [int(p) for p in f.read().split()]
        assert len(workers) == 1, workers
        return _private_dirty_mb(workers[0])


def test_async_cores_share_the_threads_lua_state():
    one = _worker_private_dirty(1)
    many = _worker_private_dirty(64)
    assert many - one < BOUND_MB, f"--async 64 worker: {many:.1f} MB private, --async 1: {one:.1f} MB"
