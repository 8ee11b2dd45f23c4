"""Offload threads (--offload-threads N): static file bodies sent by threads of their own, so that
the core that answered the request is free for the next one while a large file goes out.

uWSGI (core/offload.c, docs "The uWSGI offloading subsystem"): N native threads per worker,
each an event loop running many non-blocking transfers; requests are handed to them round
robin; the worker's request ends when the transfer is handed over (it is logged and counted
then, "offloaded_requests" in the stats), and the offload thread closes the connection when
the file is out.

Here, in the thread loop's terms (serve.py does the hand-over):
  * an offload thread is an epoll Loop (uwsgid.net.loop) in a daemon thread, started per worker
    by the worker_start hook, running FileSenders (sender.py) for sockets it does not own;
  * the connection stays its thread loop's: it stays in the loop's `conns`, `busy` (so the
    reaper and a graceful stop leave it alone, and a graceful stop waits for it), `paused`
    with its reader removed (nothing reads or closes the socket while another thread writes
    to it); its core is released at once (Core.offloaded: the scoreboard, the request log and
    the next request run now);
  * when the file is out, the offload thread posts the result back to the connection's loop
    (Loop.call_soon, thread-safe), which ends the connection's request there: keep-alive goes
    on (where uWSGI closes an offloaded connection) and pipelined requests are read again; on
    an error or a timeout the connection is closed.
So the worker's core is free during the download, and so is its thread: a sync worker (one
core) serves other requests meanwhile. Nothing blocks in the offload thread either: a stalled
client costs a timer, not a thread (--socket-timeout without progress drops it).
"""

from __future__ import annotations

import threading

from uwsgid.net.loop import Loop
from uwsgid.static.sender import FileSender
from uwsgid.util.log import log_exception


class OffloadThread:
    def __init__(self, name: str):
        self.name = name
        self.loop = Loop()
        self.loop.thread_id = -1      # any thread's call_soon wakes it until it runs
        self.transfers = 0
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        loop = self.loop
        loop.thread_id = threading.get_ident()
        while True:
            try:
                loop.run_once()
            except Exception:
                log_exception(f"error in {self.name} (continuing):")

    def submit(self, sock: int, fd: int, offset: int, count: int, timeout: float, done) -> None:
        """Send count bytes of fd from offset to sock; done(error, sent) runs in this thread."""
        def begin():
            self.transfers += 1

            def end(error, sent):
                self.transfers -= 1
                done(error, sent)
            FileSender(self.loop, sock, fd, offset, count, timeout, end).start()
        self.loop.call_soon(begin)


class OffloadPool:
    """A worker's offload threads, used round robin."""

    def __init__(self, n: int, wid: int):
        self.threads = [OffloadThread(f"uwsgi-worker{wid}-offload{i}") for i in range(n)]
        self._rr = 0

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def submit(self, sock: int, fd: int, offset: int, count: int, timeout: float, done) -> None:
        threads = self.threads
        i = self._rr
        self._rr = (i + 1) % len(threads)
        threads[i].submit(sock, fd, offset, count, timeout, done)
