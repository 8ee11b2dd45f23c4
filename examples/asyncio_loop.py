"""A worker event loop written in Python on asyncio, replacing the default worker loop
(the CFFI plugin's "loop engine in Python" idea). Load it with --cffi-init:

    ./uwsgi --http-socket :8080 --pythonpath examples --cffi-init asyncio_loop --wsgi-file examples/hello.py

Each worker runs an asyncio event loop: the listening sockets are watched with add_reader,
accepted connections are handed to the worker (worker.serve_connection), and the loop also
runs any asyncio tasks the app schedules (asyncio_loop.spawn from a request)."""

import asyncio
import inspect
import os
import signal

from uwsgid import api
from uwsgid.log import log


def spawn(coro):
    """Schedule a coroutine on this worker's asyncio loop (callable from a WSGI app)."""
    return asyncio.get_event_loop().create_task(coro)


def _accept(worker, loop, listener):
    sock = listener.sock
    while True:                     # accept until EAGAIN, as the default loop does
        try:
            conn, addr = sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            log(f"asyncio loop: accept() on {getattr(listener, 'name', '?')}: {e}")
            return
        result = worker.serve_connection(conn, addr, listener)
        if inspect.isawaitable(result):
            loop.create_task(result)


def asyncio_worker_loop(worker):
    """Runs in the worker process after fork, instead of the default loop."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    stop = loop.stop
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP):
        try:
            loop.add_signal_handler(sig, stop)
        except (ValueError, RuntimeError):
            pass
    for listener in worker.listeners:
        listener.sock.setblocking(False)
        loop.add_reader(listener.sock.fileno(), _accept, worker, loop, listener)
    log(f"asyncio loop running in worker {api.worker_id()} (pid: {os.getpid()})")
    try:
        loop.run_forever()
    finally:
        for listener in worker.listeners:
            try:
                loop.remove_reader(listener.sock.fileno())
            except (ValueError, OSError):
                pass
        loop.close()
    log(f"asyncio loop stopped in worker {api.worker_id()}")


api.set_loop(asyncio_worker_loop)
