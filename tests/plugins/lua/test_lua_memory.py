"""The per-core and per-thread cost of Lua, from the worker's private memory (generous bounds,
not timings; issue 20's precise figures live in bench/memory.py).

--async: the async cores of a thread share its lua_State, so 64 cores cost about what 1 does
(~0.2 KB a core against ~230 KB when each core had a state of its own): a regression to a state
per core adds ~14 MB and fails.

--threads: each thread has its own lua_State (as in uWSGI), so an extra thread costs its state
plus the thread itself (its stack, malloc arena, loop). Measured on pippo.lua: ~240-300 KB a
thread (the pages of the state's LuaJIT heap ~170 KB of it, the rest as for a Python app; the
plugin's README, "Memory", has the breakdown); uWSGI's lua51 ~80. It was ~350 when the GC only
stepped (every page of the state's allocator segment ends up written), ~310 with the cosocket
code loaded in every state, and ~16 KB more when each thread's Lane was zeroed whole
(test_lane_memory.py). The bound catches a new per-thread cost of ~60 KB (a buffer, a second
state a thread); test_lua_state_heap.py checks the state's causes in process, precisely.

A module a worker imports after fork costs it ~250 KB of private memory (the import machinery
writes to pages all over the master's heap): what the request path needs is imported by the
master when the plugin is configured."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import EXAMPLES, UWSGI, Server, free_port, http_get

pytestmark = pytest.mark.skipif(not UWSGI.exists(), reason="./uwsgi is not built (make build)")

PIPPO = EXAMPLES / "pippo.lua"
ASYNC_BOUND_MB = 3.0            # 63 extra cores; one lua_State each would be ~14 MB
THREAD_BOUND_KB = 330           # per extra thread; ~240-300 today (a busy machine's spread)


def _private_dirty_mb(pid: int) -> float:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Private_Dirty:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no Private_Dirty in smaps_rollup")


def _worker_private_dirty(*mode) -> float:
    port = free_port()
    args = ["--master", "-p", "1", *mode, "--http-socket", f"127.0.0.1:{port}",
            "--http-socket-modifier1", "6", "--lua", PIPPO, "--disable-logging"]
    with Server(args, port) as srv:
        # 64 requests at once, several rounds: every core and thread serves (and its state is used)
        with ThreadPoolExecutor(64) as pool:
            for _ in range(4):
                answers = list(pool.map(lambda _: http_get(port, "/"), range(64)))
                assert all(a[0] == 200 for a in answers)
        with open(f"/proc/{srv.pid}/task/{srv.pid}/children") as f:
            workers = [int(p) for p in f.read().split()]
        assert len(workers) == 1, workers
        return _private_dirty_mb(workers[0])


def test_async_cores_share_the_threads_lua_state():
    one = _worker_private_dirty("--async", 1)
    many = _worker_private_dirty("--async", 64)
    assert many - one < ASYNC_BOUND_MB, f"--async 64 worker: {many:.1f} MB private, --async 1: {one:.1f} MB"


def test_a_thread_costs_its_lua_state_and_little_more():
    one = _worker_private_dirty("--threads", 1)
    eight = _worker_private_dirty("--threads", 8)
    per_thread_kb = (eight - one) * 1024 / 7
    assert per_thread_kb < THREAD_BOUND_KB, (
        f"{per_thread_kb:.0f} KB private memory per extra thread (--threads 8: {eight:.1f} MB, "
        f"--threads 1: {one:.1f} MB)")
    assert per_thread_kb > 20, f"{per_thread_kb:.0f} KB per thread: are the 8 threads serving at all?"


def test_the_request_paths_modules_are_imported_before_fork():
    """The plugin's runtime (imported by configure, in the master) includes the native lane's
    way to the app (lane.py): a worker imported it at its first request (private memory of a
    Lua-only worker 3.5 -> 3.2 MB, bench/memory.py lua-workers)."""
    code = ("import importlib, sys; importlib.import_module('lua_plugin.plugin')._runtime(); "
            "print(sorted(m for m in ('lua_plugin.lane', 'lua_plugin.response', 'lua_plugin.state') "
            "if m not in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"not imported by the plugin's runtime: {out.stdout.strip()}"
