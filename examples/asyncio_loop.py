"""A worker event loop written in Python on asyncio, replacing the default worker loop
(the CFFI plugin's "loop engine in Python" idea). Load it with --cffi-init:

    ./uwsgi --http-socket :8080 --pythonpath examples --cffi-init asyncio_loop --wsgi-file examples/hello.py

In each worker, an asyncio event loop watches the listening sockets; every accepted
connection is served by worker.serve_connection (which blocks until the client is done,
keep-alive included) in a small thread pool, so that the asyncio loop stays free for accepting
and for the coroutines apps schedule with asyncio_loop.spawn(coro)."""

import asyncio
import concurrent.futures
import os

from uwsgid.plugins import api
from uwsgid.util.log import log

POOL_SIZE = 8          # connections served at the same time per worker


def spawn(coro):
    """Schedule a coroutine on this worker's asyncio loop (from a WSGI app: thread-safe)."""
    return asyncio.run_coroutine_threadsafe(coro, _state["loop"])


_state = {}


def _accept(worker, loop, pool, listener):
    sock = listener.sock
    while True:                     # accept until EAGAIN, as the default loop does
        try:
            conn, addr = sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            log(f"asyncio loop: accept() on {getattr(listener, 'name', '?')}: {e}")
            return
        loop.run_in_executor(pool, _serve, worker, conn, addr, listener)


def _serve(worker, conn, addr, listener):
    try:
        worker.serve_connection(conn, addr, listener)
    except Exception as e:
        log(f"asyncio loop: error serving {addr}: {e!r}")
        conn.close()


def _watch_stop(worker, loop, fds):
    # The worker's own signal handlers set worker.stopping: stop accepting, then the loop.
    if worker.stopping:
        for fd in fds:
            loop.remove_reader(fd)
        loop.stop()
    else:
        loop.call_later(0.1, _watch_stop, worker, loop, fds)


def asyncio_worker_loop(worker):
    """Runs in the worker process after fork, instead of the default loop."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    _state["loop"] = loop
    pool = concurrent.futures.ThreadPoolExecutor(POOL_SIZE, thread_name_prefix="asyncio-conn")
    fds = []
    for listener in worker.listeners:
        listener.sock.setblocking(False)
        fd = listener.sock.fileno()
        loop.add_reader(fd, _accept, worker, loop, pool, listener)
        fds.append(fd)
    loop.call_later(0.1, _watch_stop, worker, loop, fds)
    log(f"asyncio loop running in worker {api.worker_id()} (pid: {os.getpid()})")
    try:
        loop.run_forever()
    finally:
        # graceful: in-flight connections finish (serve_connection sees worker.stopping)
        pool.shutdown(wait=not worker.abort, cancel_futures=True)
        loop.close()
    log(f"asyncio loop stopped in worker {api.worker_id()}")
    return worker.exit_code


api.set_loop(asyncio_worker_loop)
