"""The worker process: its lifecycle, signals, recycling, and the threads that serve.

    Worker(wid, server).run() -> exit code      (in the forked child, or the single process)

run() announces the worker (hooks "worker_start", the plugins' post_fork), then starts one
thread loop per --threads (uwsgid.server.thread_loop: a loop, its cores and the accept that
feeds it) and serves on loop 0 in the calling thread until a stop. --async N gives each loop N
cooperative cores (uwsgid.server.core, where a request runs), else one each.

Signals (installed after fork; handlers only set flags and wake the loops):
SIGHUP, SIGTERM = graceful stop (finish in-flight requests, close idle connections, exit 0);
SIGINT, SIGQUIT = stop now. --max-requests, --reload-on-rss and --reload-on-as end the worker the
graceful way. --reaper: after each request the worker reaps the children its app left as zombies.
SIGTSTP = pause or resume (the master's --pause): stop accepting new connections, or accept
again; requests in progress and open connections go on. Under a master the scoreboard's paused
flag says which (a worker spawned while paused starts paused); alone, each SIGTSTP toggles.

For services and custom loops, a Worker offers:
    worker.add_reader(fd, cb) / remove_reader(fd)   cb() in loop 0's thread when fd is readable
    worker.call_soon(fn) / call_later(delay, fn)     fn() in loop 0's thread (call_soon: thread-safe)
    worker.stop(graceful=True)                       what the signals do
    worker.serve_connection(sock, addr, listener)    serve one accepted connection to the end,
                                                     blocking (for uwsgid.plugins.api.set_loop loops)
"""

from __future__ import annotations

import _signal  # the C functions: see _install_signals
import os
import signal
import socket
import threading
import time

from uwsgid.config.options import value as option_value
from uwsgid.net.loop import Loop
from uwsgid.plugins import api
from uwsgid.plugins.contract import AppLoadError
from uwsgid.server import user_hooks
from uwsgid.server.accept_gate import AcceptGate, default_slots
from uwsgid.server.core import Core
from uwsgid.server.thread_loop import ThreadLoop, connection_class, thread_stack_bytes
from uwsgid.server.worker_settings import WorkerSettings
from uwsgid.util import hooks
from uwsgid.util.log import log, log_exception
from uwsgid.util.memory import rss_vsz
from uwsgid.util.process import reaped

_monotonic = time.monotonic


def _reap_children() -> None:
    """--reaper: collect the exit status of any child of this worker that has ended (uWSGI's
    waitpid(-1, WNOHANG) loop after each request), so that an app's forgotten children do not
    stay zombies."""
    for _ in reaped():
        pass


_CONTROL = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP)


class Worker:
    """One worker process (or the single process): its thread loops, recycling and stop."""

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
        self.paused = False     # SIGTSTP: not accepting until resumed
        self.first_spawn = True   # not a respawn of this worker id (--hook-accepting-once)
        self.exit_code = 0
        self.thread_loops: list[ThreadLoop] = []
        self.engine = None      # --gevent: uwsgid.server.gevent_loop.Engine, made in run()
        self.cores: list[Core] = []
        # the master's, made before fork (uwsgid.server.worker_settings: why)
        settings = getattr(server, "worker_settings", None) or WorkerSettings(self.opts)
        self.settings = settings
        self.limits = settings.limits
        self.reqlog = settings.reqlog.for_worker(self)
        self._local = threading.local()
        self._next_core = 0
        self._id_lock = threading.Lock()
        seen = {}
        for plugin in self.plugins.values():
            seen.setdefault(id(plugin), plugin)
        self.unique_plugins = list(seen.values())
        self.max_requests = settings.max_requests
        self.reload_on_rss = settings.reload_on_rss
        self.reload_on_as = settings.reload_on_as
        self.reaper = settings.reaper
        # after_request has work
        self.recycles = bool(self.max_requests or self.reload_on_rss or self.reload_on_as or self.reaper)
        # --ignore-write-errors: a client gone during its response is not logged (net.connection, core)
        self.ignore_write_errors = settings.ignore_write_errors
        # --min-worker-lifetime: no recycling (max-requests, reload-on-rss/-as) before this age
        self.recycle_after = _monotonic() + settings.min_worker_lifetime
        # connections whose request is still arriving (uwsgid.server.thread_loop: pending)
        self.max_pending = settings.max_pending
        self.max_pending_per_loop = max(1, self.max_pending // settings.threads)
        self._pending_lock = threading.Lock()
        self._dropped_burst = 0        # dropped since the last log line
        self._dropped_logged = 0.0

    # ---- slow clients (called by the thread loops) -----------------------------------------------
    def pending(self) -> int:
        """Connections of this worker whose request is still arriving (its loops' tables)."""
        return sum(len(t.pending) for t in self.thread_loops)

    def pending_changed(self) -> None:
        """A loop's pending table changed: the stats' gauge follows (recounted under the lock,
        so that the last write is the count after every change)."""
        if self.scoreboard is not None:
            with self._pending_lock:
                self.scoreboard.set_pending(self.id, self.pending())

    def dropped_pending(self) -> None:
        """A loop closed its oldest pending connection (over its cap): counted, and logged once
        per burst (at most every 10 s, with how many were dropped since)."""
        with self._pending_lock:
            self._dropped_burst += 1
            if self.scoreboard is not None:
                self.scoreboard.add_dropped_pending(self.id)
            now = _monotonic()
            if now - self._dropped_logged < 10:
                return
            n, self._dropped_burst, self._dropped_logged = self._dropped_burst, 0, now
        log(f"worker {self.id}: {self.pending()} connections waiting for their request head; closed the "
            f"oldest {n} (--max-pending-heads {self.max_pending})")

    def _opt(self, name, default):
        return option_value(self.opts, name, default)

    @property
    def loops(self) -> list[Loop]:
        return [t.loop for t in self.thread_loops]

    # ---- services' entry points -----------------------------------------------------------------
    def add_reader(self, fd: int, callback) -> None:
        """Call callback() in loop 0's thread when fd is readable (services: signals, rpc...)."""
        loop = self.thread_loops[0].loop
        if threading.get_ident() == loop.thread_id:
            loop.add_reader(fd, callback)
        else:
            loop.call_soon(lambda: loop.add_reader(fd, callback))

    def remove_reader(self, fd: int) -> None:
        loop = self.thread_loops[0].loop
        if threading.get_ident() == loop.thread_id:
            loop.remove_reader(fd)
        else:
            loop.call_soon(lambda: loop.remove_reader(fd))

    def call_soon(self, fn) -> None:
        """Run fn() in loop 0's thread at its next turn (thread-safe)."""
        self.thread_loops[0].loop.call_soon(fn)

    def call_later(self, delay: float, fn):
        return self.thread_loops[0].loop.call_later(delay, fn)

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
        for t in self.thread_loops:
            t.loop.wakeup()

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

    def _under_master(self) -> bool:
        return os.getpid() != getattr(self.server, "master_pid", None) and self.scoreboard is not None

    def _on_pause(self, signum, frame) -> None:
        paused = self.scoreboard.paused() if self._under_master() else not self.paused
        if paused != self.paused:
            self.pause(paused)

    def pause(self, paused: bool) -> None:
        """Stop accepting new connections (paused) or accept again; what is in progress goes on."""
        self.paused = paused
        log(f"*** worker {self.id} {'suspended' if paused else 'resumed'} ***")
        if self.stopping:
            return
        sb = self.scoreboard
        if sb is not None:
            try:
                sb.set_accepting(self.id, not paused)
            except Exception:
                pass
        for t in self.thread_loops:
            if t.listeners:
                t.loop.call_soon(t.stop_accepting if paused else t.start_accepting)
        self._wake_all()

    def _on_immediate(self, signum, frame) -> None:
        self.stopping = True
        self.abort = True
        if os.getpid() != getattr(self.server, "master_pid", None) and any(t.busy for t in self.thread_loops):
            # A forked worker inside a request (maybe blocked in the app, where this flag is
            # never looked at): end now, as uWSGI's workers do, instead of making the master
            # SIGKILL us after 5 s. The master does the instance's cleanup.
            log(f"worker {self.id} (pid: {self.pid}) stopping now, requests in progress cut")
            os._exit(0)
        self._wake_all()

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        # _signal: signal's wrappers would turn each previous handler and the old mask into
        # enums, code a forked worker would run only to dirty pages shared with the master
        _signal.signal(_signal.SIGHUP, self._on_graceful)
        _signal.signal(_signal.SIGTERM, self._on_graceful)
        _signal.signal(_signal.SIGINT, self._on_immediate)
        _signal.signal(_signal.SIGQUIT, self._on_immediate)
        _signal.signal(_signal.SIGPIPE, _signal.SIG_IGN)
        _signal.signal(_signal.SIGTSTP, self._on_pause)
        # without a master, main held these back since the bind: they reach our handlers now
        _signal.pthread_sigmask(_signal.SIG_UNBLOCK, _CONTROL)

    def after_request(self) -> None:
        if self.reaper:
            _reap_children()
        if self.stopping or _monotonic() < self.recycle_after:
            return
        if self.max_requests and self.requests >= self.max_requests:
            log(f"...The work of process {self.pid} is done (max requests {self.max_requests}). Seeya!")
            self.stop()
        elif self.reload_on_rss or self.reload_on_as:
            rss, vsz = rss_vsz()
            if self.reload_on_rss and rss > self.reload_on_rss:
                log(f"worker {self.id} (pid: {self.pid}) RSS {rss // 1048576}MB over --reload-on-rss "
                    f"{self.reload_on_rss // 1048576}MB: reloading gracefully")
                self.stop()
            elif self.reload_on_as and vsz > self.reload_on_as:
                log(f"worker {self.id} (pid: {self.pid}) address space {vsz // 1048576}MB over --reload-on-as "
                    f"{self.reload_on_as // 1048576}MB: reloading gracefully")
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
        if self._under_master() and self.scoreboard.paused():
            self.pause(True)    # spawned while the instance is paused: no accepting until resumed
        threads, ncores = self.settings.threads, self.settings.async_cores
        custom = getattr(api, "loop_hook", None)
        if self.settings.gevent and custom is None:
            from uwsgid.server.gevent_loop import Engine  # only under --gevent: gevent's import
            self.engine = Engine(self)
        # loop 0 exists before the hooks so that services can add readers from worker_start
        first = ThreadLoop(self, 0, [] if custom else self._core_ids(ncores),
                           [] if custom else self.listeners)
        self.thread_loops.append(first)
        self.cores.extend(first.cores)
        lazy = self.settings.lazy
        try:
            hooks.run("worker_start", self)
            user_hooks.run("post-fork", self.opts, self.server, self)
            if lazy:     # the apps load here (plugins' post_fork): their hooks around them
                user_hooks.run("pre-app", self.opts, self.server, self)
            for plugin in self.unique_plugins:
                plugin.post_fork(self)
            if lazy:
                user_hooks.run("post-app", self.opts, self.server, self)
            if lazy and self.scoreboard is not None:
                # only --lazy-apps workers have apps the master has not: without it the stats
                # read the master's own list, the same (publishing it costs ~100 KB per worker)
                from uwsgid.observe import stats
                stats.publish_apps(self.server, self.id)
        except AppLoadError as e:
            log(f"worker {self.id}: {e}")
            return 22
        except (user_hooks.HookFailed, user_hooks.HookExit) as e:
            return user_hooks.fatal_in_child(self.server, e)
        except Exception:
            log_exception(f"worker {self.id}: start-up failed:")
            return 1
        try:
            if custom is not None:
                # loop 0 still runs (in a thread of its own) for the services' readers and call_soon
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

    def _service_loop(self, first: ThreadLoop) -> None:
        loop = first.loop
        loop.thread_id = threading.get_ident()
        while not self.stopping:
            try:
                loop.run_once()
            except Exception:
                log_exception("error in a service callback (continuing):")

    def _serve(self, first: ThreadLoop, threads: int, ncores: int) -> int:
        started = threading.Event()
        errors = []

        gate = self._accept_gate(threads, ncores)
        first.gate = gate
        if gate is not None:
            gate.threads.append(first)

        def thread_main(index: int) -> None:
            try:
                tl = ThreadLoop(self, index, self._core_ids_locked(ncores), self.listeners)
                tl.gate = gate
                if gate is not None:
                    gate.threads.append(tl)
                self.thread_loops.append(tl)
                self.cores.extend(tl.cores)
                tl.init_cores()
                hooks.run("worker_loop_start", tl.loop)
            except Exception as e:
                log_exception(f"worker {self.id}: thread {index} failed to start:")
                errors.append(e)
                started.set()
                return
            started.set()
            try:
                tl.serve()
            finally:
                tl.close_all()

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
        stack = thread_stack_bytes(int(self._opt("thread_stacksize", 0) or 0), self.id <= 1)
        for i in range(1, threads):
            if self.stopping:   # a stop during start-up: start no more threads (no new files opened)
                break
            started.clear()
            t = threading.Thread(target=thread_main, args=(i,), name=f"uwsgi-worker{self.id}-loop{i}", daemon=True)
            previous = threading.stack_size(stack) if stack else None
            t.start()
            if previous is not None:
                threading.stack_size(previous)   # threads the loop's hooks start keep the default
            started.wait()
            if errors:
                self.stop(graceful=False)
                break
            workers.append(t)
        sb = self.scoreboard
        if sb is not None and not self.stopping and not self.paused:
            sb.set_accepting(self.id, True)
        try:
            self._accepting_hooks()
        except (user_hooks.HookFailed, user_hooks.HookExit) as e:
            self.exit_code = user_hooks.fatal_in_child(self.server, e)
            self.stop(graceful=False)
        if gate is not None:
            gate.start(f"uwsgi-worker{self.id}-slots")
        engine = self.engine
        try:
            if engine is not None:
                engine.start()
            first.serve()
            if engine is not None:
                engine.finish()
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

    def _accepting_hooks(self) -> None:
        """--hook-accepting*: this worker accepts from now on."""
        phases = ["accepting"]
        if self.first_spawn:
            phases.append("accepting-once")
        if self.id == 1:
            phases += ["accepting1", "accepting1-once"] if self.first_spawn else ["accepting1"]
        for phase in phases:
            user_hooks.run(phase, self.opts, self.server, self)

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

    # ---- custom loops (uwsgid.plugins.api.set_loop) ------------------------------------------------------
    def _callers_thread_loop(self) -> ThreadLoop:
        """The calling thread's own loop (one core, no listeners), made at its first connection."""
        tl = getattr(self._local, "thread_loop", None)
        if tl is None:
            ids = self._core_ids_locked(1)
            tl = ThreadLoop(self, len(self.thread_loops), ids, [])
            self.thread_loops.append(tl)
            self.cores.extend(tl.cores)
            tl.init_cores()
            tl._reaper = tl.loop.call_later(1.0, tl._reap)
            self._local.thread_loop = tl
        return tl

    def serve_connection(self, sock: socket.socket, addr, listener) -> None:
        """Serve one accepted connection to completion (keep-alive included), blocking the
        calling thread: the building block for a custom loop set with uwsgid.plugins.api.set_loop."""
        tl = self._callers_thread_loop()
        sock.setblocking(False)
        conn = connection_class(listener)(tl, sock.detach(), addr, listener)
        conn.start()
        loop = tl.loop
        while not conn.closed and not self.abort:
            loop.run_once()
            if self.stopping and conn.idle_after_request():
                conn.close()
        if not conn.closed:
            conn.close()
