"""--thread-stacksize KB (uWSGI's, with its aliases): the stack of each worker's extra --threads
loop threads. Only the pages a thread touches cost memory, so it bounds address space; the
request path runs within 32 KB (CPython's minimum), which is what a smaller value is refused
below, with uWSGI's line, the default stack kept."""

from __future__ import annotations

import resource
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import EXAMPLES, UWSGI, Server, free_port, http_get

pytestmark = pytest.mark.skipif(not UWSGI.exists(), reason="./uwsgi is not built (make build)")

HELLO = EXAMPLES / "hello.py"
THREADS = 4


def _serve(*extra) -> tuple[dict, str]:
    """Worker mapping sizes in KB (rw-p anonymous ones, how many of each), and the log."""
    port = free_port()
    args = ["--master", "-p", "1", "--threads", THREADS, "--http-socket", f"127.0.0.1:{port}",
            "--wsgi-file", HELLO, "--disable-logging", *extra]
    with Server(args, port) as srv:
        with ThreadPoolExecutor(16) as pool:    # every thread serves on its stack
            answers = list(pool.map(lambda _: http_get(port, "/"), range(64)))
        assert all(a[0] == 200 for a in answers)
        with open(f"/proc/{srv.pid}/task/{srv.pid}/children") as f:
            (worker,) = [int(p) for p in f.read().split()]
        sizes: dict[int, int] = {}
        with open(f"/proc/{worker}/maps") as f:
            for line in f:
                fields = line.split()
                if fields[1] == "rw-p" and len(fields) == 5:
                    lo, hi = (int(x, 16) for x in fields[0].split("-"))
                    kb = (hi - lo) // 1024
                    sizes[kb] = sizes.get(kb, 0) + 1
        return sizes, srv.log()


def test_the_loop_threads_get_the_stack_asked_for():
    default, _ = _serve()
    small, log = _serve("--threads-stack-size", "128")     # an alias, as uWSGI spells it too
    assert "threads stack size set to 128k" in log
    # the THREADS - 1 loop threads (the first loop runs on the main thread) trade the default
    # stack (RLIMIT_STACK's soft limit: glibc's default) for 128 KB ones; other threads keep theirs
    assert small.get(128, 0) - default.get(128, 0) == THREADS - 1, (default, small)
    soft = resource.getrlimit(resource.RLIMIT_STACK)[0]
    if soft != resource.RLIM_INFINITY:
        assert default[soft // 1024] - small.get(soft // 1024, 0) == THREADS - 1, (default, small)


def test_a_stack_below_the_minimum_is_refused_with_a_line():
    sizes, log = _serve("--thread-stacksize", "16")
    assert "unable to set requested threads stacksize: --thread-stacksize 16 is below 32" in log
    assert "threads stack size set" not in log
