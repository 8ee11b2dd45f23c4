"""The worker process: loops (one per thread), cores, accept, dispatch by modifier1, lifecycle.

    Worker(wid, server).run() -> exit code      (in the forked child, or the single process)

--async N gives each loop N cooperative cores; --threads N runs N loops in N threads (one core
each unless --async is given too). A plugin's request() returns None (done) or a generator that
the core steps one yield at a time: each yield flushes the response, then either suspends the core
on the wait it armed (uwsgid.api) or gives the other cores a turn.

Signals (installed after fork; handlers only set flags and wake the loops):
SIGHUP, SIGTERM = graceful stop (finish in-flight requests, close idle connections, exit 0);
SIGINT, SIGQUIT = stop now. --max-requests and --reload-on-rss end the worker the graceful way.

For services and custom loops, a Worker offers:
    worker.add_reader(fd, cb) / remove_reader(fd)   cb() in loop 0's thread when fd is readable
    worker.call_soon(fn) / call_later(delay, fn)     fn() in loop 0's thread (call_soon: thread-safe)
    worker.stop(graceful=True)                       what the signals do
    worker.serve_connection(sock, addr, listener)    serve one accepted connection to the end,
                                                     blocking (for uwsgid.api.set_loop loops)
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import threading
import time
from collections import deque

from uwsgid import api, hooks
from uwsgid.accept_gate import AcceptGate, default_slots, schedstat
from uwsgid.api import Wait, set_current
from uwsgid.connection import Connection
from uwsgid.log import log, log_exception
from uwsgid.loop import Loop
from uwsgid.plugin import AppLoadError
from uwsgid.protocols import Limits
from uwsgid.reqlog import RequestLogger, memory_usage

try:
    # accept4(SOCK_NONBLOCK) in C: one syscall per connection and no socket object
    from _uwsgi import ffi as _ffi, lib as _lib
    _c_accept = _lib.uwsgi_accept
except (ImportError, AttributeError):   # plain python without the build: socket.accept
    _c_accept = None

_monotonic = time.monotonic
_time = time.time
_thread_time = time.thread_time
_OUT_OF_FDS = (-errno.ENFILE, -errno.EMFILE)
_ADDR_CAP = 128     # sizeof(struct sockaddr_storage)
SINGLE_CORE_BURST = 64     # yields stepped back to back when a loop has one core and nothing waits
ACCEPT_BATCH = 16


class Core:
    """One request slot: an async core or a thread's core. Fields are read by plugins and api."""

    __slots__ = ("id", "worker", "runner", "loop", "state", "request", "requests", "wait", "ready_fd",
                 "timed_out", "thread", "gen", "conn", "_timer", "_wait_fd", "_wait_prev", "_resume",
                 "exceptions", "after")

    def __init__(self, cid: int, runner):
        self.id = cid
        self.runner = runner
        self.worker = runner.worker
        self.loop = runner.loop
        self.state = {}
        self.request = None
        self.requests = 0
        self.exceptions = 0
        self.wait = None
        self.ready_fd = -1
        self.timed_out = False
        self.thread = threading.current_thread()
        self.gen = None
        self.conn = None
        self._timer = None
        self._wait_fd = -1
        self._wait_prev = None
        self._resume = self.step
        self.after = None       # the serving plugin's after_request, for _done

    # ---- running a request ------------------------------------------------------------------
    def run(self, conn, req) -> None:
        w = self.worker
        self.conn = conn
        self.request = req
        req.core = self
        req.start = _monotonic()
        req.start_wall = _time()
        req.switches = 1
        self.requests += 1
        w.requests += 1
        set_current(self)
        try:
            sb = w.scoreboard
            if sb is not None:
                sb.begin(w.id, self.id, req.vars.get(b"REQUEST_URI", b""))
            plugin = w.plugins.get(req.modifier1)
            if plugin is None or not plugin.has_app():
                res = plugin = False
            else:
                self.after = plugin.after_request
                res = plugin.request(req)
        except Exception:
            self._fail()
            return
        if plugin is False:
            self._no_app(w.plugins.get(req.modifier1))
            return
        if res is None:
            self.finish()
            return
        self.gen = res
        self.step()

    def step(self) -> None:
        gen = self.gen
        req = self.request
        conn = self.conn
        if gen is None or req is None:
            return
        single = self.runner.single
        ready = self.loop.ready
        burst = 0
        while True:
            if conn.closed:
                self._client_gone()
                return
            self.wait = None
            set_current(self)
            try:
                next(gen)
                req.switches += 1
                if req._buf:
                    req.flush()
            except StopIteration:
                self.gen = None
                self.finish()
                return
            except Exception:
                self._fail()
                return
            if conn.closed:
                self._client_gone()
                return
            w = self.wait
            if w is not None:
                self._arm(w)
                return
            if conn.out:
                conn.on_drain = self._resume   # suspended until the client takes the bytes
                return
            burst += 1
            if not single or ready or burst >= SINGLE_CORE_BURST:
                ready.append(self._resume)     # a turn for the other cores and the loop
                return

    def finish(self) -> None:
        req = self.request
        if not req.status:
            log(f"error: the app returned without starting a response to {_desc(req)}")
            req.exception = True
            req.error_response(500, b"Internal Server Error", b"Internal Server Error\n")
        if not self.conn.closed:
            try:
                req.flush(True)
            except Exception:
                self._fail()
                return
        self._done()

    def _fail(self) -> None:
        req = self.request
        conn = self.conn
        log_exception(f"error while serving {_desc(req)} (modifier1 {req.modifier1}):")
        req.exception = True
        self.exceptions += 1
        self._close_gen()
        if not conn.closed:
            try:
                if not req.headers_sent:
                    req.error_response(500, b"Internal Server Error", b"Internal Server Error\n")
                    req.flush(True)
                else:
                    # make the truncation visible: no last chunk / short body, then close
                    req.broken = True
                    req.keepalive = False
                    req._buf = []
                    req.flush(True)
            except Exception:
                log_exception("error while sending the error response:")
                conn.close()
        self._done()

    def _no_app(self, plugin) -> None:
        req = self.request
        if plugin is None:
            log(f"-- unavailable modifier requested: {req.modifier1} --")
        else:
            log(f"--- no {plugin.name or 'app'} application found for modifier1 {req.modifier1} "
                f"({_desc(req)}), check your startup logs for errors ---")
        req.app_id = -1
        req.error_response(503, b"Service Unavailable", b"Service Unavailable\n")
        self.finish()

    def _client_gone(self) -> None:
        req = self.request
        log(f"client {self.conn.peer} went away during the response to {_desc(req)}")
        sb = self.worker.scoreboard
        if sb is not None and hasattr(sb, "add_error"):
            sb.add_error(self.worker.id, self.id, "write")
        self._close_gen()
        self._done()

    def _close_gen(self) -> None:
        gen = self.gen
        self.gen = None
        self._cancel_wait()
        if gen is not None and hasattr(gen, "close"):
            try:
                set_current(self)
                gen.close()
            except Exception:
                log_exception("error while closing the response generator:")

    def _done(self) -> None:
        req = self.request
        conn = self.conn
        w = self.worker
        req.end = _monotonic()
        req.finished = True
        self.gen = None
        self.request = None
        self.conn = None
        # the connection first: a one-shot client (nginx) gets its FIN with the response, not
        # after our bookkeeping
        conn.request_done(req)
        after = self.after
        if after is not None:
            self.after = None
            try:
                after(req)
            except Exception:
                log_exception(f"error after serving {_desc(req)}:")
        sb = w.scoreboard
        if sb is not None:
            sb.end(w.id, self.id, req.status, req.response_size + req.headers_size,
                   int((req.end - req.start) * 1_000_000), req.exception, req.modifier1, req.app_id)
        try:
            w.reqlog(req)
        except Exception:
            log_exception("error while logging a request:")
        self.runner.core_done(self)
        if w.recycles:
            w.after_request()

    # ---- waits --------------------------------------------------------------------------------
    def _arm(self, w: Wait) -> None:
        loop = self.loop
        if w.fd >= 0:
            fd = w.fd
            try:
                if w.events & Wait.WRITE:
                    self._wait_prev = loop._writers.get(fd)
                    loop.add_writer(fd, self._fd_ready)
                else:
                    self._wait_prev = loop._readers.get(fd)
                    loop.add_reader(fd, self._fd_ready)
            except (OSError, ValueError) as e:
                # a bad fd: the app sees its wait time out rather than hanging the core
                log(f"wait on fd {fd} failed ({getattr(e, 'strerror', None) or e}) in {_desc(self.request)}")
                if w.events & Wait.WRITE:
                    loop._writers.pop(fd, None)
                else:
                    loop._readers.pop(fd, None)
                self._wait_prev = None
                self.wait = None
                self.ready_fd = -1
                self.timed_out = True
                loop.ready.append(self._resume)
                return
            self._wait_fd = fd
        if w.timeout is not None:
            self._timer = loop.call_later(w.timeout, self._wait_timeout)

    def _cancel_wait(self) -> None:
        t = self._timer
        if t is not None:
            t.cancel()
            self._timer = None
        fd = self._wait_fd
        if fd >= 0:
            self._wait_fd = -1
            loop = self.loop
            w = self.wait
            prev = self._wait_prev
            self._wait_prev = None
            if w is not None and w.events & Wait.WRITE:
                if prev is not None:
                    loop.add_writer(fd, prev)
                else:
                    loop.remove_writer(fd)
            elif prev is not None:
                loop.add_reader(fd, prev)
            else:
                loop.remove_reader(fd)

    def _fd_ready(self) -> None:
        fd = self._wait_fd
        self._cancel_wait()
        self.ready_fd = fd
        self.timed_out = False
        self.wait = None
        self.step()

    def _wait_timeout(self) -> None:
        self._timer = None
        self._cancel_wait()
        self.ready_fd = -1
        self.timed_out = True
        self.wait = None
        self.step()


def _desc(req) -> str:
    if req is None:
        return "?"
    uri = req.vars.get(b"REQUEST_URI", b"")
    return f"{req.method.decode('latin-1')} {uri[:200].decode('latin-1')}"


class Runner:
    """One loop (one thread) with its cores and connections."""

    def __init__(self, worker, index: int, core_ids: list[int], listeners):
        self.worker = worker
        self.index = index
        self.loop = Loop(index)
        self.limits = worker.limits
        self.cores = [Core(cid, self) for cid in core_ids]
        self.free = list(reversed(self.cores))
        self.single = len(self.cores) == 1
        # see _shed_idle; not for serve_connection's runners (their loops run only per connection)
        self.shed = self.single and bool(listeners) and int(worker._opt("threads", 1) or 1) > 1
        self.incoming = 0
        self.waiting: deque = deque()
        self.conns: dict[int, Connection] = {}
        self.listeners = listeners
        self.accepting = False
        self.held = None        # one-core loops: the accepted connection whose request is awaited
        self._reaper = None
        self.gate = None        # --thread-slots (uwsgid.accept_gate): may this thread accept now?
        self.busy_since = 0.0   # the gate's: when this thread last stopped accepting
        self.cpu_clock = None   # this thread's CPU clock and kernel thread id, for the gate
        self.tid = 0
        self.schedstat_fd = -1  # /proc/thread-self/schedstat, for the gate's sleep measure
        self._cpu0 = None       # at the start of the running request: thread CPU time, schedstat
        self._stat0 = None

    def init_cores(self) -> None:
        for core in self.cores:
            core.thread = threading.current_thread()
            for plugin in self.worker.unique_plugins:
                plugin.init_core(core)

    def start_accepting(self) -> None:
        if self.accepting or self.worker.stopping:
            return
        gate = self.gate
        if gate is not None and (not self.free or not gate.admit(self)):
            return   # busy (core_done calls again), or parked until the gate grants a slot
        self.accepting = True
        for lst in self.listeners:
            self.loop.add_reader(lst.fd, self._acceptor(lst), exclusive=True)

    def stop_accepting(self) -> None:
        if not self.accepting:
            return
        self.accepting = False
        for lst in self.listeners:
            self.loop.remove_reader(lst.fd)
        if self.gate is not None and self.gate.engaged:
            self.gate.busy(self)

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
        if _c_accept is None:
            return self._py_acceptor(listener)
        lfd = listener.fd
        http = listener.proto == "http"
        # uwsgi packets carry the client's address in their vars: ours is fetched only for a log line
        abuf = _ffi.new("char[]", _ADDR_CAP) if http else _ffi.NULL
        aview = _ffi.buffer(abuf) if http else None
        alen = _ffi.new("unsigned int *")

        def accept():
            for _ in range(ACCEPT_BATCH):
                fd = _c_accept(lfd, abuf, _ADDR_CAP, alen)
                if fd < 0:
                    if fd in _OUT_OF_FDS:
                        self._out_of_fds(listener, os.strerror(-fd))
                    return   # EAGAIN (nothing pending), or a connection aborted before we took it
                if self._started(Connection(self, fd, aview[:alen[0]] if http else None, listener)):
                    return
        return accept

    def _py_acceptor(self, listener):
        _accept = listener.sock._accept

        def accept():
            for _ in range(ACCEPT_BATCH):
                try:
                    fd, addr = _accept()
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as e:
                    if e.errno in (errno.ENFILE, errno.EMFILE):
                        self._out_of_fds(listener, e.strerror)
                    return
                os.set_blocking(fd, False)
                if self._started(Connection(self, fd, addr, listener)):
                    return
        return accept

    def _started(self, conn) -> bool:
        """Start serving a just-accepted connection; True ends the accept batch."""
        conn.start()
        if self.single:
            return self._hold(conn)
        return not self.accepting or not self.free

    def _hold(self, conn) -> bool:
        """A one-core loop after accepting `conn`; True ends the accept batch. It holds at most
        one connection still to be served: accepting stops until that request runs (core_done
        resumes) or the connection closes (serve() resumes), so the rest of the queue goes to
        idle threads/workers instead of waiting behind a blocking request (and timing out)."""
        if conn.served == 0 and not conn.closed and not conn.busy:
            self.held = conn
            self.stop_accepting()
            return True
        if conn.busy or not self.free:
            # its request is suspended on the only core: core_done resumes accepting
            self.stop_accepting()
            return True
        return not self.accepting

    def _release_held(self) -> None:
        """The held connection was served or closed: accept again if the core is free."""
        held = self.held
        if held.closed or held.served or held.busy:
            self.held = None
            if self.free and not self.accepting and not self.worker.stopping and self.listeners:
                self.start_accepting()

    def _out_of_fds(self, listener, why: str) -> None:
        # back off instead of spinning on a listener that stays readable
        log(f"accept() on {listener.name}: {why}; pausing accepts for 1s")
        self.stop_accepting()
        self.loop.call_later(1.0, self.start_accepting)

    # ---- cores ------------------------------------------------------------------------------
    def dispatch(self, conn, req) -> None:
        free = self.free
        if free:
            if self.shed and len(self.conns) > 1:
                self._shed_idle(conn)
            if self.gate is not None:
                self._measure_start()
                if self.accepting and self.gate.engaged:
                    self.stop_accepting()   # the gate counts a thread busy from when it stops accepting
            free.pop().run(conn, req)
        else:
            self.waiting.append((conn, req))
            self.stop_accepting()   # at most N requests in progress: let other workers take them

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
            self.loop.ready.append(lambda: core.run(conn, req))
            return
        self.free.append(core)
        if not self.accepting and not self.worker.stopping and self.listeners:
            self.start_accepting()

    def _shed_idle(self, keep) -> None:
        """--threads: a thread about to run a (maybe blocking) request hands its idle keep-alive
        connections to idle threads, so that their next requests do not wait behind this one."""
        if self.worker.stopping:
            return
        targets = [r for r in self.worker.runners if r is not self and r.free and r.shed]
        if not targets:
            return
        for conn in list(self.conns.values()):
            if conn is keep or not conn.idle_after_request() or conn.paused or conn.eof:
                continue
            target = min(targets, key=lambda r: len(r.conns) + r.incoming)
            self.loop.forget(conn.fd)
            del self.conns[conn.fd]
            target.incoming += 1
            target.loop.call_soon(lambda t=target, c=conn: t.adopt(c))

    def adopt(self, conn) -> None:
        """Take over a connection handed over by another thread of this worker."""
        self.incoming -= 1
        if conn.closed:
            return
        conn.runner = self
        conn.loop = self.loop
        self.conns[conn.fd] = conn
        self.loop.add_reader(conn.fd, conn.on_readable)

    @property
    def busy(self) -> bool:
        return len(self.free) < len(self.cores) or bool(self.waiting)

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
            if self.held is not None:
                self._release_held()
            if w.stopping:
                if not draining:
                    draining = True
                    self.stop_accepting()
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
        for conn in list(self.conns.values()):
            conn.close()
        if self.schedstat_fd >= 0:
            os.close(self.schedstat_fd)
            self.schedstat_fd = -1
        self.loop.close()


class Worker:
    def __init__(self, wid: int, server):
        self.id = wid
        self.server = server
        self.opts = server.opts
        self.listeners = list(getattr(server, "listeners", []) or [])
        self.plugins = dict(getattr(server, "plugins", {}) or {})
        self.scoreboard = getattr(server, "scoreboard", None)
        self.pid = os.getpid()
        self.requests = 0
        self.stopping = False
        self.abort = False
        self.exit_code = 0
        self.runners: list[Runner] = []
        self.cores: list[Core] = []
        self.limits = Limits.from_opts(self.opts)
        self.reqlog = RequestLogger(self.opts, self)
        self._local = threading.local()
        self._next_core = 0
        self._id_lock = threading.Lock()
        seen = {}
        for plugin in self.plugins.values():
            seen.setdefault(id(plugin), plugin)
        self.unique_plugins = list(seen.values())
        self.max_requests = int(self._opt("max_requests", 0) or 0)
        self.reload_on_rss = int(self._opt("reload_on_rss", 0) or 0) * 1024 * 1024
        self.recycles = bool(self.max_requests or self.reload_on_rss)   # after_request has work
        # --min-worker-lifetime: no recycling (max-requests, reload-on-rss) before this age
        self.recycle_after = _monotonic() + int(self._opt("min_worker_lifetime", 10) or 0)

    def _opt(self, name, default):
        try:
            v = getattr(self.opts, name)
        except AttributeError:
            return default
        return default if v is None else v

    @property
    def loops(self) -> list[Loop]:
        return [r.loop for r in self.runners]

    # ---- services' entry points -----------------------------------------------------------------
    def add_reader(self, fd: int, callback) -> None:
        """Call callback() in loop 0's thread when fd is readable (services: signals, rpc...)."""
        loop = self.runners[0].loop
        if threading.get_ident() == loop.thread_id:
            loop.add_reader(fd, callback)
        else:
            loop.call_soon(lambda: loop.add_reader(fd, callback))

    def remove_reader(self, fd: int) -> None:
        loop = self.runners[0].loop
        if threading.get_ident() == loop.thread_id:
            loop.remove_reader(fd)
        else:
            loop.call_soon(lambda: loop.remove_reader(fd))

    def call_soon(self, fn) -> None:
        """Run fn() in loop 0's thread at its next turn (thread-safe)."""
        self.runners[0].loop.call_soon(fn)

    def call_later(self, delay: float, fn):
        return self.runners[0].loop.call_later(delay, fn)

    def total_requests(self) -> int:
        """Requests served by all workers (the M in the log's "req: N/M"), from the scoreboard."""
        sb = self.scoreboard
        if sb is not None:
            try:
                fn = getattr(sb, "total_requests", None)
                if fn is not None:
                    return int(fn())
                if hasattr(sb, "worker_requests"):
                    return sum(sb.worker_requests(i) for i in range(1, int(sb.numproc) + 1))
            except Exception:
                pass
        return self.requests

    # ---- lifecycle -------------------------------------------------------------------------------
    def _wake_all(self) -> None:
        for r in self.runners:
            r.loop.wakeup()

    def stop(self, graceful: bool = True) -> None:
        """Ask the worker to stop (graceful: finish in-flight requests first). Thread-safe."""
        self.stopping = True
        if not graceful:
            self.abort = True
        self._stop_accepting()
        self._wake_all()

    def _stop_accepting(self) -> None:
        sb = self.scoreboard
        if sb is not None:
            try:
                sb.set_accepting(self.id, False)
            except Exception:   # the stats view only; never let it block a stop
                pass

    def _on_graceful(self, signum, frame) -> None:
        self.stopping = True
        self._wake_all()

    def _on_immediate(self, signum, frame) -> None:
        self.stopping = True
        self.abort = True
        if os.getpid() != getattr(self.server, "master_pid", None) and any(r.busy for r in self.runners):
            # A forked worker inside a request (maybe blocked in the app, where this flag is
            # never looked at): end now, as uWSGI's workers do, instead of making the master
            # SIGKILL us after 5 s. The master does the instance's cleanup.
            log(f"worker {self.id} (pid: {self.pid}) stopping now, requests in progress cut")
            os._exit(0)
        self._wake_all()

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGHUP, self._on_graceful)
        signal.signal(signal.SIGTERM, self._on_graceful)
        signal.signal(signal.SIGINT, self._on_immediate)
        signal.signal(signal.SIGQUIT, self._on_immediate)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    def after_request(self) -> None:
        if self.stopping or _monotonic() < self.recycle_after:
            return
        if self.max_requests and self.requests >= self.max_requests:
            log(f"...The work of process {self.pid} is done (max requests {self.max_requests}). Seeya!")
            self.stop()
        elif self.reload_on_rss:
            rss = memory_usage()[1]
            if rss > self.reload_on_rss:
                log(f"worker {self.id} (pid: {self.pid}) RSS {rss // 1048576}MB over --reload-on-rss "
                    f"{self.reload_on_rss // 1048576}MB: reloading gracefully")
                self.stop()

    def _core_ids(self, n: int) -> list[int]:
        ids = list(range(self._next_core, self._next_core + n))
        self._next_core += n
        return ids

    def run(self) -> int:
        api.worker = self
        if api.server is None:
            api.server = self.server
        self.pid = os.getpid()
        self._install_signals()
        threads = max(1, int(self._opt("threads", 1) or 1))
        ncores = max(1, int(self._opt("async", 1) or 1))
        custom = getattr(api, "loop_hook", None)
        # loop 0 exists before the hooks so that services can add readers from worker_start
        first = Runner(self, 0, [] if custom else self._core_ids(ncores), [] if custom else self.listeners)
        self.runners.append(first)
        self.cores.extend(first.cores)
        try:
            hooks.run("worker_start", self)
            for plugin in self.unique_plugins:
                plugin.post_fork(self)
            if self.scoreboard is not None:
                from uwsgid import stats
                stats.publish_apps(self.server, self.id)
        except AppLoadError as e:
            log(f"worker {self.id}: {e}")
            return 22
        except Exception:
            log_exception(f"worker {self.id}: start-up failed:")
            return 1
        try:
            if custom is not None:
                # loop 0 still runs (in a helper thread) for the services' readers and call_soon
                t = threading.Thread(target=self._service_loop, args=(first,), name="uwsgi-services", daemon=True)
                t.start()
                rc = custom(self)
                self.stopping = True
                first.loop.wakeup()
                t.join(5)
                return int(rc or 0)
            return self._serve(first, threads, ncores)
        finally:
            for plugin in self.unique_plugins:
                try:
                    plugin.shutdown()
                except Exception:
                    log_exception("error in plugin shutdown:")
            self._stop_accepting()

    def _service_loop(self, runner: Runner) -> None:
        loop = runner.loop
        loop.thread_id = threading.get_ident()
        while not self.stopping:
            try:
                loop.run_once()
            except Exception:
                log_exception("error in a service callback (continuing):")

    def _serve(self, first: Runner, threads: int, ncores: int) -> int:
        started = threading.Event()
        errors = []

        gate = self._accept_gate(threads, ncores)
        first.gate = gate
        if gate is not None:
            gate.runners.append(first)

        def thread_main(index: int) -> None:
            try:
                r = Runner(self, index, self._core_ids_locked(ncores), self.listeners)
                r.gate = gate
                if gate is not None:
                    gate.runners.append(r)
                self.runners.append(r)
                self.cores.extend(r.cores)
                r.init_cores()
                hooks.run("worker_loop_start", r.loop)
            except Exception as e:
                log_exception(f"worker {self.id}: thread {index} failed to start:")
                errors.append(e)
                started.set()
                return
            started.set()
            try:
                r.serve()
            finally:
                r.close_all()

        try:
            first.init_cores()
            hooks.run("worker_loop_start", first.loop)
        except AppLoadError as e:
            log(f"worker {self.id}: {e}")
            return 22
        except Exception:
            log_exception(f"worker {self.id}: core initialisation failed:")
            return 1
        workers = []
        for i in range(1, threads):
            if self.stopping:   # a stop during start-up: start no more threads (no new files opened)
                break
            started.clear()
            t = threading.Thread(target=thread_main, args=(i,), name=f"uwsgi-worker{self.id}-loop{i}", daemon=True)
            t.start()
            started.wait()
            if errors:
                self.stop(graceful=False)
                break
            workers.append(t)
        sb = self.scoreboard
        if sb is not None and not self.stopping:
            sb.set_accepting(self.id, True)
        if gate is not None:
            gate.start(f"uwsgi-worker{self.id}-slots")
        try:
            first.serve()
        finally:
            if gate is not None:
                gate.close()
            self._wake_all()
            for t in workers:
                while t.is_alive():
                    t.join(0.5)
                    if self.abort:
                        break
            first.close_all()
        return 1 if errors else self.exit_code

    def _accept_gate(self, threads: int, ncores: int):
        """--thread-slots for one-core threads that accept: None when it would change nothing."""
        if threads < 2 or ncores != 1 or not self.listeners:
            return None
        slots = self._opt("thread_slots", None)
        if slots is None:
            slots = default_slots(int(self._opt("processes", 1) or 1))
        slots = int(slots)
        if slots <= 0 or slots >= threads:
            return None
        return AcceptGate(slots, name=f"worker {self.id}: thread slots ({slots} of {threads} threads accept)")

    def _core_ids_locked(self, n: int) -> list[int]:
        with self._id_lock:
            return self._core_ids(n)

    # ---- custom loops (uwsgid.api.set_loop) ------------------------------------------------------
    def _thread_runner(self) -> Runner:
        r = getattr(self._local, "runner", None)
        if r is None:
            ids = self._core_ids_locked(1)
            r = Runner(self, len(self.runners), ids, [])
            self.runners.append(r)
            self.cores.extend(r.cores)
            r.init_cores()
            r._reaper = r.loop.call_later(1.0, r._reap)
            self._local.runner = r
        return r

    def serve_connection(self, sock: socket.socket, addr, listener) -> None:
        """Serve one accepted connection to completion (keep-alive included), blocking the
        calling thread: the building block for a custom loop set with uwsgid.api.set_loop."""
        r = self._thread_runner()
        sock.setblocking(False)
        conn = Connection(r, sock.detach(), addr, listener)
        conn.start()
        loop = r.loop
        while not conn.closed and not self.abort:
            loop.run_once()
            if self.stopping and conn.idle_after_request():
                conn.close()
        if not conn.closed:
            conn.close()
