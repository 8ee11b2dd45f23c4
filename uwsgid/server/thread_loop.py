"""One thread's loop: its cores, its connections, and the accept that feeds them.

A worker runs one ThreadLoop per thread (--threads N), each with its own epoll Loop and its
cores (uwsgid.server.core: --async N of them, else one). The life of a connection here:

    serve()           runs the loop until the worker stops (then drains: see below)
    start_accepting   listeners readable -> accept() (a closure per listener: accept4 in C, or
                      socket.accept) takes up to ACCEPT_BATCH connections per turn
    Connection(...).start()   its first read right away; requests it parses are pumped to
    dispatch(conn, req)       a free core runs it; with none free the request waits and
                              accepting stops (at most N in progress: other workers take the rest)
    core_done(core)           the next waiting request, or the core is free and accepting resumes

A one-core loop stops accepting while its core runs (or owes) a request (_hold), so that the
rest of the queue goes to idle threads and workers; and before it runs a maybe-blocking request
it hands its idle keep-alive connections to idle threads (_shed_idle -> adopt), so that no
client waits behind another's request while a thread is idle.

Slow clients never hold a core: a connection whose first request is still arriving is kept in
`pending` and the loop goes on accepting (a slowloris attack costs connections, not workers).
The request runs when it is complete; its head has --http-header-timeout (the connection's
deadline); past the per-loop cap (--max-pending-heads) the oldest pending connection is closed.
With --thread-slots (uwsgid.server.accept_gate) a thread accepts only while it holds a slot,
and tells the gate what each request cost (_measure_start / _measure_end).

On a graceful stop serve() stops accepting, closes idle keep-alive connections and returns
once its requests and connections are done; an immediate stop returns at once.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections import deque

from uwsgid.net.connection import Connection
from uwsgid.net.loop import Loop
from uwsgid.net.raw import RawConnection
from uwsgid.server import conn_spread, keepalive_watch, native_lane
from uwsgid.server.accept_gate import schedstat
from uwsgid.server.core import Core
from uwsgid.util.log import log, log_exception

try:
    # accept4(SOCK_NONBLOCK) in C: one syscall per connection and no socket object
    from _uwsgi import ffi as _ffi
    from _uwsgi import lib as _lib
    _c_accept = _lib.uwsgi_accept
except (ImportError, AttributeError):   # plain python without the build: socket.accept
    _c_accept = None

_monotonic = time.monotonic
_thread_time = time.thread_time
_OUT_OF_FDS = (-errno.ENFILE, -errno.EMFILE)
_ADDR_CAP = 128     # sizeof(struct sockaddr_storage)
ACCEPT_BATCH = 16
STOP_GRACE = 1.0    # seconds a graceful stop waits for a request still arriving
def _keeps_http_alive(worker, listeners) -> bool:
    """An HTTP listener with keep-alive on: only then can idle clients wait behind a slow request
    (the uwsgi protocol closes after every response; behind nginx the watcher has nothing to do)."""
    return worker.settings.http_keepalive and any(lst.proto == "http" for lst in listeners)


MIN_STACK_KB = 32   # the smallest thread stack CPython accepts (threading.stack_size)
# --thread-stacksize is declared with --threads in uwsgid.config.core_options: parsed before
# this module is imported


def thread_stack_bytes(kb: int, log_it: bool) -> int:
    """--thread-stacksize KB, checked: the stack size in bytes for the loop threads (uWSGI's
    threads_attr: only the core threads), or 0 for the default. A size CPython refuses is logged
    in uWSGI's words and the default stays, as in uWSGI."""
    if kb == 0:
        return 0
    why = f"is below {MIN_STACK_KB} (KB), the smallest stack Python runs on" if kb < MIN_STACK_KB else ""
    if not why:
        try:    # a thread started with it: CPython and pthread_create both must take the size
            previous = threading.stack_size(kb * 1024)
            try:
                probe = threading.Thread(target=int, name="uwsgi-stack-probe")
                probe.start()
                probe.join()
            finally:
                threading.stack_size(previous)
        except (ValueError, RuntimeError, OverflowError) as e:
            why = f"({e})"
    if log_it:
        log(f"!!! unable to set requested threads stacksize: --thread-stacksize {kb} {why} !!!" if why
            else f"threads stack size set to {kb}k")
    return 0 if why else kb * 1024


def connection_class(listener):
    """Connection, or TlsConnection for an --https-socket (ssl is imported only then), or
    RawConnection for a --raw-socket."""
    if getattr(listener, "tls", None) is None:
        return RawConnection if listener.proto == "raw" else Connection
    from uwsgid.net.tls import TlsConnection
    return TlsConnection

class ThreadLoop:
    """One loop (one thread) with its cores and connections."""

    def __init__(self, worker, index: int, core_ids: list[int], listeners):
        self.worker = worker
        self.index = index
        self.loop = Loop(index)
        self.limits = worker.limits
        self.cores = [Core(cid, self) for cid in core_ids]
        self.free = list(reversed(self.cores))
        self.single = len(self.cores) == 1
        # see _shed_idle; not for serve_connection's loops (they run only per connection)
        self.shed = self.single and bool(listeners) and worker.settings.threads > 1
        self.incoming = 0
        self.waiting: deque = deque()
        self.conns: dict[int, Connection] = {}
        self.listeners = listeners
        self.accepting = False
        # connections whose first request is still arriving, oldest first (see the module doc)
        self.pending: dict[int, Connection] = {}
        self.max_pending = worker.max_pending_per_loop
        self.head_timeout = worker.settings.head_timeout
        self._reaper = None
        self.gate = None        # --thread-slots (uwsgid.server.accept_gate): may this thread accept now?
        self.busy_since = 0.0   # the gate's: when this thread last stopped accepting
        self.cpu_clock = None   # this thread's CPU clock and kernel thread id, for the gate
        self.tid = 0
        self.schedstat_fd = -1  # /proc/thread-self/schedstat, for the gate's sleep measure
        self._cpu0 = None       # at the start of the running request: thread CPU time, schedstat
        self._stat0 = None
        self.run_started = 0.0  # when the core took its running request (keepalive_watch's)
        self.lane = None        # the native lane's C object, when it serves this loop (its busy_since)
        self._acceptors: dict = {}  # listener fd -> its accept callable, made on first start_accepting
        self._requeue_due = False   # kept_open's: a requeue is queued for the next turn
        self.watch_lock = None
        self.spread = conn_spread.for_loop(self)    # connections over the workers (a multi-core loop)
        engine = getattr(worker, "engine", None)
        if engine is not None:
            engine.adopt(self)  # --gevent (uwsgid.server.gevent_loop): this loop on the hub
        elif self.single and _keeps_http_alive(worker, listeners):
            keepalive_watch.watch(self)     # its idle keep-alive clients must not wait behind a slow request

    def init_cores(self) -> None:
        for core in self.cores:
            core.thread = threading.current_thread()
            for plugin in self.worker.unique_plugins:
                plugin.init_core(core)

    # ---- accepting ------------------------------------------------------------------------------
    def start_accepting(self) -> None:
        if self.accepting or self.worker.stopping or self.worker.paused:
            return
        if self.spread is not None and self.spread.timer is not None:
            return   # leaving new connections to workers with cores to spare (conn_spread)
        gate = self.gate
        if gate is not None and (not self.free or not gate.admit(self)):
            return   # busy (core_done calls again), or parked until the gate grants a slot
        self.accepting = True
        acceptors = self._acceptors
        for lst in self.listeners:
            accept = acceptors.get(lst.fd)
            if accept is None:      # made once: a sync worker stops and starts accepting around each Python-path request
                accept = acceptors[lst.fd] = self._acceptor(lst)
            self.loop.add_reader(lst.fd, accept, exclusive=True)

    def stop_accepting(self) -> None:
        if not self.accepting:
            return
        self.accepting = False
        for lst in self.listeners:
            self.loop.remove_reader(lst.fd)
        if self.gate is not None and self.gate.engaged:
            self.gate.busy(self)

    def kept_open(self) -> None:
        """A connection this loop accepted stays open after its first turn (kept alive, a
        WebSocket, a request still running): before the next turn this loop goes to the back of
        its listeners' queues, so that long-lived connections spread over the idle workers and
        threads instead of all going to the first one (once per turn, whatever the count)."""
        if not self._requeue_due:
            self._requeue_due = True
            self.loop.ready.append(self._requeue)

    def _requeue(self) -> None:
        self._requeue_due = False
        if self.accepting:
            for lst in self.listeners:
                self.loop.requeue(lst.fd)

    def grant(self) -> None:
        """The gate gave this thread a slot (called from the gate's monitor thread)."""
        self.loop.call_soon(self.start_accepting)

    def regate(self) -> None:
        """The gate engaged: an accepting thread without a slot stops (thread-safe)."""
        self.loop.call_soon(self._regate)

    def _regate(self) -> None:
        gate = self.gate
        if self.accepting and gate is not None and not gate.admit(self):
            self.stop_accepting()

    def _acceptor(self, listener):
        conn_class = connection_class(listener)
        lane = native_lane.acceptor(self, listener, conn_class)
        if lane is not None:
            return lane
        if _c_accept is None:
            return self._py_acceptor(listener)
        lfd = listener.fd
        http = listener.proto != "uwsgi"    # http and raw: the peer's address comes from accept
        # uwsgi packets carry the client's address in their vars: ours is fetched only for a log line
        abuf = _ffi.new("char[]", _ADDR_CAP) if http else _ffi.NULL
        aview = _ffi.buffer(abuf) if http else None
        alen = _ffi.new("unsigned int *")
        worker = self.worker

        def accept():
            for _ in range(ACCEPT_BATCH):
                if worker.paused:
                    return   # SIGTSTP came while a request ran in this batch: stop_accepting is queued
                fd = _c_accept(lfd, abuf, _ADDR_CAP, alen)
                if fd < 0:
                    if fd in _OUT_OF_FDS:
                        self._out_of_fds(listener, os.strerror(-fd))
                    return   # EAGAIN (nothing pending), or a connection aborted before we took it
                if self._start_ends_batch(conn_class(self, fd, aview[:alen[0]] if http else None, listener)):
                    return
        return accept

    def _py_acceptor(self, listener):
        _accept = listener.sock._accept
        worker = self.worker
        conn_class = connection_class(listener)

        def accept():
            for _ in range(ACCEPT_BATCH):
                if worker.paused:
                    return
                try:
                    fd, addr = _accept()
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as e:
                    if e.errno in (errno.ENFILE, errno.EMFILE):
                        self._out_of_fds(listener, e.strerror)
                    return
                os.set_blocking(fd, False)
                if self._start_ends_batch(conn_class(self, fd, addr, listener)):
                    return
        return accept

    def _start_ends_batch(self, conn, data: bytes = b"") -> bool:
        """Start serving a just-accepted connection (`data`: what was read from it already).
        True: this loop takes no more connections in this accept batch (it stopped accepting,
        or has no free core for another)."""
        if data:
            conn.start(data)
        else:
            conn.start()
        if not (conn.busy or conn.closed or conn.queue or conn.served):
            self._add_pending(conn)     # its request is not in yet: wait for it, keep accepting
        elif not conn.closed:
            self.kept_open()            # served and kept alive, or its request still running
        if self.single:
            return self._hold(conn)
        if self.spread is not None and self.spread.accepted():
            return True
        if not self.free:
            # every core busy: the next connection goes to a loop with a free core, not into this
            # one's queue (core_done starts accepting again)
            self.stop_accepting()
            return True
        return not self.accepting

    def _hold(self, conn) -> bool:
        """A one-core loop after accepting `conn`; True ends the accept batch. While its core
        runs (or owes) a request, accepting stops until core_done resumes it, so the rest of the
        queue goes to idle threads/workers instead of waiting behind a blocking request. A busy
        connection with the core free (its response offloaded: uwsgid.static) does not stop it."""
        if not self.free:
            self.stop_accepting()
            return True
        return not self.accepting

    # ---- connections whose first request is still arriving ---------------------------------------
    def _add_pending(self, conn) -> None:
        pending = self.pending
        if len(pending) >= self.max_pending:
            oldest = next(iter(pending.values()))
            self.worker.dropped_pending()
            oldest.close()
        conn.pending = True
        pending[conn.fd] = conn
        self.worker.pending_changed()

    def _hurry_pending(self) -> None:
        """A graceful stop: a request still arriving gets STOP_GRACE more, not a whole head
        timeout, or slow clients would hold every reload (nothing accepts meanwhile)."""
        deadline = _monotonic() + STOP_GRACE
        for conn in self.pending.values():
            conn.deadline = min(conn.deadline, deadline)

    def forget_pending(self, conn) -> None:
        """conn's first request came in (it is dispatched), or conn closed."""
        conn.pending = False
        del self.pending[conn.fd]
        self.worker.pending_changed()

    def _out_of_fds(self, listener, why: str) -> None:
        # back off instead of spinning on a listener that stays readable
        log(f"accept() on {listener.name}: {why}; pausing accepts for 1s")
        self.stop_accepting()
        self.loop.call_later(1.0, self.start_accepting)

    # ---- cores ------------------------------------------------------------------------------
    def dispatch(self, conn, req) -> None:
        if conn.pending:
            self.forget_pending(conn)
        free = self.free
        if free:
            if self.shed and len(self.conns) > 1:
                self._shed_idle(conn)
            if self.gate is not None:
                self._measure_start()
                if self.accepting and self.gate.engaged:
                    self.stop_accepting()   # the gate counts a thread busy from when it stops accepting
            self._run(free.pop(), conn, req)
        else:
            self.waiting.append((conn, req))
            self.stop_accepting()   # at most N requests in progress: let other workers take them

    def _run(self, core, conn, req) -> None:
        if self.watch_lock is None:
            core.run(conn, req)
            return
        # the app runs in this thread: keepalive_watch may act on this loop's idle connections
        # meanwhile (and only meanwhile: a generator's later steps run between loop turns)
        self.run_started = _monotonic()
        try:
            core.run(conn, req)
        finally:
            with self.watch_lock:
                self.run_started = 0.0

    def _measure_start(self) -> None:
        self._cpu0 = _thread_time()
        fd = self.schedstat_fd
        self._stat0 = (_monotonic(), schedstat(fd)) if fd >= 0 and self.gate.measures(self) else None

    def _measure_end(self) -> None:
        """Tell the gate what the request that just ended cost: CPU time, and time asleep."""
        cpu = _thread_time() - self._cpu0
        self._cpu0 = None
        now = _monotonic()
        sleep = None
        if self._stat0 is not None:
            started, (on_cpu0, queued0) = self._stat0
            on_cpu, queued = schedstat(self.schedstat_fd)
            sleep = max(0.0, now - started - (on_cpu - on_cpu0) - (queued - queued0))
        self.gate.record(cpu, sleep, now)

    def core_done(self, core) -> None:
        if self._cpu0 is not None:
            self._measure_end()
        waiting = self.waiting
        while waiting:
            conn, req = waiting.popleft()
            if conn.closed:
                conn.busy = False
                continue
            self.loop.ready.append(lambda: self._run(core, conn, req))
            return
        self.free.append(core)
        if not self.accepting and not self.worker.stopping and self.listeners:
            self.start_accepting()

    # ---- handing connections between threads ------------------------------------------------------
    def _shed_idle(self, keep) -> None:
        """--threads: a thread about to run a (maybe blocking) request hands its idle keep-alive
        connections to idle threads, so that their next requests do not wait behind this one."""
        if self.worker.stopping:
            return
        targets = [t for t in self.worker.thread_loops if t is not self and t.free and t.shed]
        if not targets:
            return
        for conn in list(self.conns.values()):
            if conn is keep or not conn.idle_after_request() or conn.paused or conn.eof:
                continue
            target = min(targets, key=lambda t: len(t.conns) + t.incoming)
            self.loop.forget(conn.fd)
            del self.conns[conn.fd]
            target.incoming += 1
            target.loop.call_soon(lambda t=target, c=conn: t.adopt(c))

    def adopt(self, conn) -> None:
        """Take over a connection handed over by another thread of this worker."""
        self.incoming -= 1
        if conn.closed:
            return
        conn.thread_loop = self
        conn.loop = self.loop
        self.conns[conn.fd] = conn
        self.loop.add_reader(conn.fd, conn.on_readable)

    @property
    def busy(self) -> bool:
        lane = self.lane    # an app running on the native lane holds the core without taking it
        return len(self.free) < len(self.cores) or bool(self.waiting) or (lane is not None and lane.busy_since > 0)

    # ---- serving ------------------------------------------------------------------------------
    def _reap(self) -> None:
        now = _monotonic()
        for conn in list(self.conns.values()):
            if conn.deadline < now and not conn.closed:
                conn.timed_out(now)
        self._reaper = self.loop.call_later(1.0, self._reap)

    def serve(self) -> None:
        loop = self.loop
        w = self.worker
        if self.gate is not None:
            self.tid = threading.get_native_id()
            self.cpu_clock = time.pthread_getcpuclockid(threading.get_ident())
            try:
                self.schedstat_fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                self.schedstat_fd = -1   # no schedstat here: the gate goes by CPU time alone
        self._reaper = loop.call_later(1.0, self._reap)
        self.start_accepting()
        draining = False
        while not w.abort:
            try:
                loop.run_once()
            except Exception:
                log_exception("error in the worker loop (continuing):")
            if w.stopping:
                if not draining:
                    draining = True
                    self.stop_accepting()
                    self._hurry_pending()
                    sb = w.scoreboard
                    if sb is not None and self.index == 0:
                        sb.set_accepting(w.id, False)
                for conn in list(self.conns.values()):
                    if conn.idle_after_request():
                        conn.close()
                if not self.conns and not self.busy and not self.incoming:
                    break
        self.stop_accepting()

    def close_all(self) -> None:
        if self.spread is not None:
            self.spread.cancel()
        if self.watch_lock is not None:
            keepalive_watch.unwatch(self)
        for conn in list(self.conns.values()):
            conn.close()
        if self.schedstat_fd >= 0:
            os.close(self.schedstat_fd)
            self.schedstat_fd = -1
        self.loop.close()
