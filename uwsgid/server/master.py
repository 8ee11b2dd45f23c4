"""The master: forks the workers (and the --http router), supervises them, serves stats.

One loop (gunicorn's arbiter is the model): signal handlers do nothing but wake the loop
through signal.set_wakeup_fd, which also tells it which signal came; the loop acts.

    SIGHUP          graceful reload: workers finish in-flight requests and exit; the
                    listening sockets stay open here (their backlog holds new connections);
                    then the master re-execs itself (app code reloaded) or, with
                    --lazy-apps, only re-forks the workers.
    SIGTERM         graceful stop (uWSGI 2.1 semantics).
    SIGINT/SIGQUIT  immediate stop.
    SIGTSTP         pause / resume (--pause, --suspend, --resume PIDFILE; uWSGI's
                    suspend_resume_them_all): toggles the scoreboard's paused flag and
                    passes the signal to the workers, which then stop or start accepting
                    (what they are serving goes on). Workers (re)spawned while paused start
                    paused; the cheaper algorithm rests meanwhile.
    SIGCHLD         reap; respawn what died unless stopping.

Every second (the tick): harakiri, --evil-reload-on-rss/-as, --max-worker-lifetime, --idle and
chain reloads (uwsgid.server.lifetime), the touch files (uwsgid.server.master_touch), --hook-touch,
mercy kills, delayed respawns, hooks "master_tick". A unix_signal hook (uwsgid.server.user_hooks) may take over a
signal; --master-fifo (uwsgid.server.master_fifo) gives the same actions by letter.
"""

from __future__ import annotations

import _signal  # the C functions, no enum conversions: see _fork
import heapq
import os
import selectors
import signal
import time

from uwsgid.net.loop import Timer
from uwsgid.server import prefork, procname, reexec, user_hooks
from uwsgid.server.instance import cleanup
from uwsgid.server.lifetime import Lifetime
from uwsgid.server.master_actions import KILLING, RELOADING, RUNNING, STOPPING
from uwsgid.server.master_touch import MasterTouches
from uwsgid.util import hooks, loggers
from uwsgid.util.log import log, log_exception
from uwsgid.util.process import die_with_parent, reaped

EXIT_APP_LOAD = 22
FAST_DEATH_SECS = 1     # a worker dying younger than this (not asked to) counts toward a crash loop
_HANDLED = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD,
            signal.SIGUSR1, signal.SIGTSTP)


def _die_with_parent(master_pid: int) -> None:
    """--no-orphans: the kernel kills this worker when the master goes away."""
    die_with_parent(master_pid)


class Child:
    """One forked process the master supervises: a worker (wid >= 1) or the http router (wid 0)."""

    def __init__(self, wid: int, pid: int, kind: str = "worker"):
        self.wid = wid
        self.pid = pid
        self.kind = kind
        self.spawned_at = time.monotonic()
        self.cursed_at: float | None = None     # asked to stop (SIGTERM sent)
        self.mercy_at: float | None = None      # SIGKILL after this
        self.harakiri = False
        self.harakiri_grace = None      # (core, request start, deadline) of a graceful harakiri


class Master:
    def __init__(self, server):
        self.server = server
        self.opts = server.opts
        self.state = RUNNING
        self.exit_code = 0
        self.children: dict[int, Child] = {}          # pid -> Child
        self.pending_respawn: dict[int, float] = {}   # wid -> monotonic time to respawn at
        self.fast_deaths: dict[int, int] = {}         # wid -> consecutive too-fast deaths
        self.killing_deadline: float | None = None
        self.next_tick = 0.0
        self.touches = None                           # uwsgid.server.master_touch.MasterTouches
        self.stats = None
        self.cheaper = None                           # uwsgid.server.cheaper.Cheaper with --cheaper
        self.sel = selectors.DefaultSelector()
        self.timers: list = []                        # heap of (when, seq, fn)
        self._child_cleaned = False
        self._timer_seq = 0
        self.paused = False                           # SIGTSTP: the workers do not accept
        self.lifetime = Lifetime(self)                # max-worker-lifetime, cheap/idle, chain reload
        self.fifo = None                              # uwsgid.server.master_fifo.MasterFifo
        self.touch_hooks = None                       # user_hooks.TouchHooks with --hook-touch
        self.ever_spawned: set[int] = set()           # worker ids forked by this master (accepting-once)
        server.master = self
        # a --pause arriving before the loop handles signals waits (its default would stop us)
        signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGTSTP,))

    # ---- for services (uwsgid/services): master-side readers and timers ------------------------

    def add_reader(self, fd: int, callback) -> None:
        """callback() runs in the master loop when fd is readable (closed in forked children)."""
        self.sel.register(fd, selectors.EVENT_READ, callback)

    def remove_reader(self, fd: int) -> None:
        try:
            self.sel.unregister(fd)
        except (KeyError, ValueError):
            pass

    def call_later(self, delay: float, fn) -> Timer:
        """fn() runs in the master loop after `delay` seconds (finer than the 1 s tick)."""
        t = Timer(time.monotonic() + max(0.0, delay), fn)
        self._timer_seq += 1
        heapq.heappush(self.timers, (t.when, self._timer_seq, t))
        return t

    def _run_timers(self, now: float) -> None:
        while self.timers and self.timers[0][0] <= now:
            _, _, t = heapq.heappop(self.timers)
            if not t.cancelled:
                try:
                    t.fn()
                except Exception:
                    log_exception("uwsgi: master timer failed:")

    # ---- signals ------------------------------------------------------------------------

    def _install_signals(self) -> None:
        self.pipe_r, self.pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.pipe_w, warn_on_full_buffer=False)
        for sig in _HANDLED:
            signal.signal(sig, lambda s, f: None)   # the wakeup fd carries the signal number
        signal.siginterrupt(signal.SIGCHLD, False)
        self.sel.register(self.pipe_r, selectors.EVENT_READ, self._on_wakeup)
        # main blocked them while starting: what arrived meanwhile is delivered now
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _HANDLED)

    def _on_wakeup(self) -> None:
        try:
            data = os.read(self.pipe_r, 4096)
        except BlockingIOError:
            return
        for signum in data:
            self.handle_signal(signum)

    def handle_signal(self, signum: int) -> None:
        override = user_hooks.master_signal(signum)     # a unix_signal hook took this signal
        if override is not None:
            override(self)
            return
        if signum == signal.SIGHUP:
            self.reload("...gracefully killing workers...")
        elif signum == signal.SIGTERM:
            if self.state in (RUNNING, RELOADING):
                log("SIGTERM received: gracefully stopping uWSGI (workers finish their requests)...")
                self.stop_gracefully()
        elif signum in (signal.SIGINT, signal.SIGQUIT):
            if self.state != KILLING:
                log("SIGINT/SIGQUIT received...killing workers...")
            self.kill_all()
        elif signum == signal.SIGUSR1 and self.stats is not None:
            log(self.stats.render(minified=True).decode())
        elif signum == signal.SIGTSTP:
            self.toggle_pause()

    # ---- public actions (also used by uwsgi.reload()/stop() through the signals) ------------

    def reload(self, why: str) -> None:
        if self.state != RUNNING:
            return
        if self.opts.exit_on_reload:
            log("--exit-on-reload: stopping instead of reloading")
            self.stop_gracefully()
            return
        log(why)
        if self.server.lazy_apps:
            # Only the workers are replaced (their apps load after fork): respawn each as it exits.
            for child in self._workers():
                self._curse(child, signal.SIGTERM)
            return
        self.state = RELOADING
        self._stop_phase()

    def toggle_pause(self) -> None:
        """Pause the workers (they stop accepting; their requests and connections go on) or
        resume them: the scoreboard says which, the signal tells them to look."""
        if self.state != RUNNING:
            log("SIGTSTP received while stopping or reloading: ignored")
            return
        self.paused = not self.paused
        if self.paused:
            log("*** PAUSE (press start to resume, if you do not have a joypad send SIGTSTP) ***")
        else:
            log("*** (SIGTSTP received) resuming workers ***")
        self.server.scoreboard.set_paused(self.paused)
        for child in self._workers():
            self._signal(child, signal.SIGTSTP)

    def stop_gracefully(self) -> None:
        self.state = STOPPING
        self.pending_respawn.clear()
        self._stop_phase()

    def kill_all(self) -> None:
        first = self.state != KILLING
        self.state = KILLING
        self.pending_respawn.clear()
        sig = signal.SIGINT if first else signal.SIGKILL
        for child in list(self.children.values()):
            self._signal(child, sig)
            child.cursed_at = child.cursed_at or time.monotonic()
        if first:
            self.killing_deadline = time.monotonic() + 5.0

    def _stop_phase(self) -> None:
        """Graceful stop/reload order: the router first (its requests still need workers), then workers."""
        routers = [c for c in self.children.values() if c.kind == "router"]
        if routers:
            for c in routers:
                if c.cursed_at is None:
                    self._curse(c, signal.SIGTERM)
            return
        for c in self._workers():
            if c.cursed_at is None:
                self._curse(c, signal.SIGTERM)

    # ---- children ---------------------------------------------------------------------------

    def _workers(self) -> list[Child]:
        return [c for c in self.children.values() if c.kind == "worker"]

    def _signal(self, child: Child, sig: int) -> None:
        try:
            os.kill(child.pid, sig)
        except ProcessLookupError:
            pass

    def _curse(self, child: Child, sig: int) -> None:
        """Ask a child to stop; SIGKILL it if it is still there after the mercy period
        (--reload-mercy for a whole-instance reload/stop, --worker-reload-mercy otherwise)."""
        mercy = self.opts.reload_mercy if self.state in (RELOADING, STOPPING) else self.opts.worker_reload_mercy
        child.cursed_at = time.monotonic()
        child.mercy_at = child.cursed_at + max(1, int(mercy or 60))
        self._signal(child, sig)

    def _fork(self, target) -> int:
        master_pid = os.getpid()
        # _signal, not signal: the latter's wrappers turn every result into enums (the previous
        # handler, each signal of a mask), running enum.py's code in the child; each function
        # a new worker runs writes pages it shared with the master (issue 20: ~180 KB here)
        old = _signal.pthread_sigmask(_signal.SIG_BLOCK, _HANDLED)
        try:
            pid = os.fork()
        except OSError as e:
            _signal.pthread_sigmask(_signal.SIG_SETMASK, old)
            log(f"fork(): {e.strerror}")
            return -1
        if pid:
            _signal.pthread_sigmask(_signal.SIG_SETMASK, old)
            return pid
        # child: forget the master's signal plumbing before anything can arrive
        rc = 1
        try:
            _signal.set_wakeup_fd(-1)
            for sig in _HANDLED:
                _signal.signal(sig, _signal.SIG_DFL)
            _signal.signal(_signal.SIGINT, _signal.default_int_handler)
            # not stopped by a pause meant for the workers (a worker installs its handler)
            _signal.signal(_signal.SIGTSTP, _signal.SIG_IGN)
            _signal.pthread_sigmask(_signal.SIG_SETMASK, old)
            self._close_master_fds()
            if self.opts.no_orphans:
                _die_with_parent(master_pid)
            rc = target()
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except KeyboardInterrupt:
            rc = 0
        except BaseException:
            log_exception(f"uwsgi: process {os.getpid()} crashed:")
            rc = 1
        finally:
            try:
                import sys
                sys.stdout.flush()
                sys.stderr.flush()
            except Exception:
                pass
            os._exit(int(rc or 0) & 0xFF)

    def _after_fork_in_child(self, master_pid: int) -> None:
        """Any fork made by the master process (ours, or a service's: mules) drops the master's
        signal plumbing at once: a child handling a signal must not wake the master's loop."""
        if os.getppid() != master_pid or self._child_cleaned:
            return
        try:
            signal.set_wakeup_fd(-1)
        except ValueError:       # forked from a non-main thread: no wakeup fd there
            pass
        self._close_master_fds()

    def _close_master_fds(self) -> None:
        if self._child_cleaned:
            return
        self._child_cleaned = True
        try:
            # the epoll fd only (select.epoll.close, in C): the selector's own close() also
            # empties its map, freeing a key per registered fd, each free a write to a page the
            # child shares with the master (issue 20); the child never uses this selector
            getattr(self.sel, "_selector", self.sel).close()
        except Exception:
            pass
        for fd in (self.pipe_r, self.pipe_w):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.stats is not None:
            self.stats.close(unlink=False)

    def spawn_worker(self, wid: int, respawn: bool = False) -> None:
        server = self.server

        first_spawn = wid not in self.ever_spawned
        self.ever_spawned.add(wid)

        def run_worker():
            from uwsgid.plugins import api
            from uwsgid.server.worker import Worker
            api.server = server
            procname.name_process(self.opts, f"uWSGI worker {wid}")
            worker = Worker(wid, server)
            worker.first_spawn = first_spawn
            return worker.run()

        pid = self._fork(run_worker)
        if pid < 0:
            self.pending_respawn[wid] = time.monotonic() + 1.0
            return
        server.scoreboard.spawned(wid, pid, respawn)
        self.children[pid] = Child(wid, pid)
        if respawn:
            log(f"Respawned uWSGI worker {wid} (new pid: {pid})")
        else:
            log(f"spawned uWSGI worker {wid} (pid: {pid}, cores: {server.cores})")

    def spawn_router(self, respawn: bool = False) -> None:
        from uwsgid.server import router
        server = self.server

        def run_router():
            procname.name_process(self.opts, "uWSGI http 1")
            try:
                user_hooks.run("as-gateway", self.opts, server)
            except (user_hooks.HookFailed, user_hooks.HookExit) as e:
                return user_hooks.fatal_in_child(server, e)
            return router.run(server)

        pid = self._fork(run_router)
        if pid < 0:
            self.pending_respawn[0] = time.monotonic() + 1.0
            return
        self.children[pid] = Child(0, pid, "router")
        log(f"{'respawned' if respawn else 'spawned'} uWSGI http 1 (pid: {pid})")

    def _reap(self) -> None:
        for pid, status in reaped():
            child = self.children.pop(pid, None)
            if child is not None:
                self._child_died(child, status)
            else:
                try:
                    hooks.run("child_exited", pid, status)    # a service's process
                except Exception:
                    log_exception("uwsgi: child_exited hook failed:")

    def _child_died(self, child: Child, status: int) -> None:
        now = time.monotonic()
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
        if child.kind == "router":
            if self.state == RUNNING:
                how = f"killed by signal {sig}" if sig else f"exit code {code}"
                log(f"uWSGI http 1 (pid: {child.pid}) died ({how}) :( trying respawn ...")
                self._schedule(0, child, now)
            else:
                self._stop_phase()    # router gone: now the workers may stop
            return
        self.server.scoreboard.died(child.wid)
        if self.state != RUNNING:
            log(f"worker {child.wid} buried after {int(now - (child.cursed_at or now))} seconds")
            return
        if code == EXIT_APP_LOAD and self.opts.need_app:
            log(f"OOPS ! failed loading app in worker {child.wid} (pid {child.pid}) :( GAME OVER")
            self.exit_code = EXIT_APP_LOAD
            self.stop_gracefully()
            return
        if self.cheaper is not None and self.cheaper.buried(child):
            return
        if self.lifetime.buried(child):
            return      # stopped for cheap mode: back with the next connection
        if child.cursed_at is not None and not child.harakiri:
            log(f"worker {child.wid} killed successfully (pid: {child.pid})")
        elif code == 0:
            pass    # a deliberate exit (max-requests, reload-on-rss): the worker said why
        elif sig:
            log(f"DAMN ! worker {child.wid} (pid: {child.pid}) died, killed by signal {sig} :( trying respawn ...")
        else:
            log(f"DAMN ! worker {child.wid} (pid: {child.pid}) died, exit code {code} :( trying respawn ...")
        self._schedule(child.wid, child, now, deliberate=(code == 0 or child.cursed_at is not None or child.harakiri))

    def _schedule(self, wid: int, child: Child, now: float, deliberate: bool = False) -> None:
        """Respawn now, or later when the process keeps dying young (a crash loop)."""
        lifetime = now - child.spawned_at
        if deliberate or lifetime >= FAST_DEATH_SECS:
            self.fast_deaths.pop(wid, None)
            self.pending_respawn[wid] = now
            return
        n = self.fast_deaths.get(wid, 0) + 1
        self.fast_deaths[wid] = n
        delay = min(2 ** (n - 2), 30) if n > 2 else 0   # two quick retries, then back off
        if delay:
            log(f"worker respawning too fast !!! i have to sleep a bit ({delay} seconds)...")
        self.pending_respawn[wid] = now + delay

    def _respawn_due(self, now: float) -> None:
        if self.state != RUNNING:
            return
        for wid, at in sorted(self.pending_respawn.items()):
            if at <= now:
                del self.pending_respawn[wid]
                if wid == 0:
                    self.spawn_router(respawn=True)
                else:
                    self.spawn_worker(wid, respawn=True)

    # ---- the tick -------------------------------------------------------------------------

    def _tick(self, now: float) -> None:
        if self.state == RUNNING:
            self.lifetime.check_harakiri()
            self.lifetime.check_evil_memory()
            self.touches.check()
            if self.cheaper is not None and self.state == RUNNING and not self.paused and not self.lifetime.is_cheap:
                self.cheaper.tick()
            if self.state == RUNNING:
                self.lifetime.tick(now)
            if self.touch_hooks is not None and self.state == RUNNING:
                self.touch_hooks.check()
        self._check_mercy(now)
        try:
            hooks.run("master_tick", self.server)
        except Exception:
            log_exception("uwsgi: master_tick hook failed:")

    def _check_mercy(self, now: float) -> None:
        for child in list(self.children.values()):
            if child.mercy_at is not None and now >= child.mercy_at:
                log(f"worker {child.wid} (pid: {child.pid}) is taking too much time to die...NO MERCY !!!")
                child.mercy_at = None
                self._signal(child, signal.SIGKILL)
        if self.state == KILLING and self.killing_deadline and now >= self.killing_deadline:
            self.killing_deadline = None
            for child in list(self.children.values()):
                self._signal(child, signal.SIGKILL)

    # ---- run ---------------------------------------------------------------------------------

    def run(self) -> int:
        server = self.server
        self._child_cleaned = False
        master_pid = os.getpid()
        os.register_at_fork(after_in_child=lambda: self._after_fork_in_child(master_pid))
        self._install_signals()
        procname.name_master(self.opts)
        log(f"*** Operational MODE: preforking{'+threaded' if server.cores > 1 and self.opts.threads > 1 else ''}"
            f"{'+async' if int(self.opts.get('async') or 1) > 1 else ''} ***")
        log(f"spawned uWSGI master process (pid: {os.getpid()})")
        if self.opts.stats:
            from uwsgid.observe.stats import StatsServer
            try:
                self.stats = StatsServer(server, self.opts.stats)
            except OSError as e:
                log(f"uwsgi: cannot bind the stats server on {self.opts.stats}: {e.strerror or e}")
                self._finish()
                return 1
            self.sel.register(self.stats.sock, selectors.EVENT_READ, self.stats.on_accept)
            log(f"stats server enabled on {self.opts.stats} fd: {self.stats.sock.fileno()}")
        if self.opts.cheaper:
            from uwsgid.server.cheaper import Cheaper, CheaperError
            try:
                self.cheaper = Cheaper(self)
            except CheaperError as e:
                log(f"uwsgi: {e}")
                self._finish()
                return 1
        if self.opts.master_fifo:
            from uwsgid.server.master_fifo import FifoError, MasterFifo
            try:
                self.fifo = MasterFifo(self, self.opts.master_fifo)
            except FifoError as e:
                log(f"uwsgi: {e}")
                self._finish()
                return 1
        if self.opts.hook_touch:
            self.touch_hooks = user_hooks.TouchHooks(self.opts, server)
        self.touches = MasterTouches(self)      # the first look at the files (uWSGI's master start)
        prefork.prepare(server)
        for wid in self.lifetime.initial_wids(self._initial_wids()):
            self.spawn_worker(wid)
        if server.router_sockets:
            self.spawn_router()
        try:
            user_hooks.run("master-start", self.opts, server)
        except (user_hooks.HookFailed, user_hooks.HookExit) as e:
            user_hooks.fatal_in_master(self, e)
        try:
            self._loop()
        except Exception:
            log_exception("uwsgi: master loop crashed, killing workers:")
            for child in list(self.children.values()):
                self._signal(child, signal.SIGKILL)
            self.exit_code = 1
        return self._finish()

    def _loop(self) -> None:
        while True:
            now = time.monotonic()
            deadline = min(self.next_tick, now + 1.0, *self.pending_respawn.values(),
                           *(t[0] for t in self.timers[:1]))
            timeout = max(0.0, deadline - now)
            try:
                events = self.sel.select(timeout)
            except InterruptedError:
                events = []
            for key, _ in events:
                try:
                    key.data()
                except Exception:
                    log_exception("uwsgi: master event handler failed:")
            self._reap()
            now = time.monotonic()
            self._respawn_due(now)
            self._run_timers(now)
            if now >= self.next_tick:
                self.next_tick = now + 1.0
                self._tick(now)
            if self.state != RUNNING and not self.children:
                if self.state == RELOADING and not reexec.can_exec(self.server):
                    self._reload_in_place()
                    continue
                return

    def _reload_in_place(self) -> None:
        """The binary cannot be re-exec'd (deleted, not executable): new workers at least."""
        log(f"uwsgi: cannot re-exec {reexec.binary_path()}: reloading the workers only")
        self.state = RUNNING
        for wid in self._initial_wids():
            self.spawn_worker(wid, respawn=True)
        if self.server.router_sockets:
            self.spawn_router(respawn=True)

    def _initial_wids(self) -> list[int]:
        """The workers to start: all, or with --cheaper those not cheaped."""
        if self.cheaper is not None:
            return self.cheaper.initial_wids()
        return list(range(1, self.server.numproc + 1))

    def _finish(self) -> int:
        server = self.server
        try:
            # services stop with this incarnation of the master (a re-exec'd one starts them anew)
            hooks.run("shutdown", server)
        except Exception:
            log_exception("uwsgi: shutdown hook failed:")
        self.lifetime.close()
        if not (self.state == RELOADING and self.opts.exit_on_reload):
            try:
                user_hooks.run("as-user-atexit", self.opts, server)
            except user_hooks.HookExit:
                pass
        if self.fifo is not None:
            self.fifo.close(vacuum=bool(self.opts.vacuum) and self.state != RELOADING)
        if self.state == RELOADING:
            log("binary reloading uWSGI...")
            log(f"chdir() to {server.cwd}")
            log(f"running {' '.join(reexec.command(server.argv))}")
            self._restore_signals()
            loggers.stop_for_exec()     # --log-master: drained; the next master adopts its fds
            try:
                reexec.exec_master(server)
            except OSError as e:
                log(f"uwsgi: cannot re-exec the master: {e}")
                self.exit_code = 1
        if self.stats is not None:
            self.stats.close()
        cleanup(server)
        log("goodbye to uWSGI.")
        # Python's finalization puts back the default handlers: a stop signal sent again in that
        # window (a second SIGTERM) would end the process by the signal, not with exit_code
        signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED)
        return self.exit_code

    def _restore_signals(self) -> None:
        # Handlers stay (no-ops): exec resets them to the defaults in the new image.
        signal.set_wakeup_fd(-1)
        if self.stats is not None:
            self.stats.close()
            self.stats = None
        try:
            self.sel.close()
        except Exception:
            pass
