"""A blocking call (name resolution: getaddrinfo has no non-blocking form) run in a small thread
pool while the calling core waits on an eventfd, so that only that core waits: what the
cooperative sockets of both runtimes use (cffi_plugin.cooperative, lua_plugin.cosocket)."""

from __future__ import annotations

import os
import threading

_pool = None
_pool_lock = threading.Lock()


class _Done:
    """An eventfd written when the thread finishes (never after the waiter closed it)."""
    __slots__ = ("fd", "lock")

    def __init__(self):
        self.fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self.lock = threading.Lock()

    def fire(self, _future) -> None:
        with self.lock:
            if self.fd >= 0:
                os.eventfd_write(self.fd, 1)

    def close(self) -> None:
        with self.lock:
            os.close(self.fd)
            self.fd = -1


def in_thread(fn, *args):
    """A generator: yields the fd to wait for (readable) until fn(*args) has run in a pool
    thread, then returns its result (or raises its exception)."""
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                from concurrent.futures import ThreadPoolExecutor  # only once a name is resolved
                _pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="uwsgi-resolver")
    done = _Done()
    try:
        future = _pool.submit(fn, *args)
        future.add_done_callback(done.fire)
        while not future.done():
            yield done.fd
        return future.result()
    finally:
        done.close()
