"""--gevent N: a worker's loop and cores on gevent's hub (uWSGI's gevent loop engine).

The worker keeps its own machinery (uwsgid.server.thread_loop: the epoll Loop, the accept,
Connection and its parsers, the cores, pending heads, graceful stop) and runs it on the hub:

  - The loop's blocking epoll_wait becomes a wait on the hub: the hub watches the loop's epoll
    fd (one io watcher) and a timer for the loop's next deadline, so the serve loop (the main
    greenlet) sleeps only while the hub has nothing else to run; with callbacks ready it gives
    the hub one turn before polling. A prepare watcher wakes it early when a greenlet queued
    work for the loop (a core freed with a request waiting) or an earlier timer.
  - A request of a plugin that sets `gevent_greenlets` (the Python plugin) runs in a greenlet
    (uWSGI spawns one per request): the app may block on anything gevent patches (time.sleep,
    socket, ssl, requests, redis...) and only its greenlet waits. The core's api waits
    (uwsgi.async_sleep, wait_fd_read/_write, suspend, a WebSocket recv) wait on gevent watchers
    inside the call; a body suspended on a slow client or giving the other cores a turn goes
    on in the same greenlet later. Each core keeps its greenlet and runs its requests in it
    one after another (parked on the hub in between, its contextvars emptied for each request,
    as a new greenlet's): a new greenlet per request costs CPython 3.11+ a frame stack of its
    own, mapped and unmapped (two syscalls and a page fault per request). Like a thread of
    --threads, it keeps its gevent.local values from one request to the next. Lua requests stay
    on the loop (their coroutines step in the main greenlet, their waits on the loop's epoll,
    which the hub watches).
  - The current core is greenlet-local (uwsgid.plugins.api.use_local).
  - --gevent-monkey-patch: gevent.monkey.patch_all() in the worker before it serves (the
    cffi plugin does --gevent-early-monkey-patch before the apps load). --gevent-wait-for-hub:
    a stopping worker, once its requests are done, also waits for the greenlets the app
    started (up to --worker-reload-mercy) instead of leaving at once.

Why this shape and not the hub's io watchers for every connection: see
plugins/cffi/cffi_plugin/README.md ("--gevent").
"""

from __future__ import annotations

import time

import gevent
import gevent.local
from gevent import getcurrent
from gevent.hub import get_hub
from greenlet import GreenletExit, greenlet

from uwsgid.plugins import api
from uwsgid.plugins.api import Wait, set_current
from uwsgid.util.log import log, log_exception

_monotonic = time.monotonic
STOPPING_TICK = 0.1     # a stopping loop looks at its requests this often (their ends do not wake it)
_RUN, _STEP = "run", "step"     # the jobs of a core's greenlet: a new request, or its body's next step


class _GreenletLocal:
    """The current core, kept on the running greenlet itself (uwsgid.plugins.api.use_local):
    gevent.local builds a dict and a weak reference for each new greenlet, one per request."""

    __slots__ = ("_fallback",)

    def __init__(self):
        self._fallback = gevent.local.local()    # a greenlet class without a __dict__

    @property
    def core(self):
        g = getcurrent()
        try:
            return g._uwsgi_core
        except AttributeError:
            return getattr(self._fallback, "core", None)

    @core.setter
    def core(self, core) -> None:
        try:
            getcurrent()._uwsgi_core = core
        except AttributeError:
            self._fallback.core = core


class _HubEpoll:
    """A Loop's epoll whose poll() waits on the hub instead of in epoll_wait."""

    def __init__(self, ep, loop, engine):
        self.register = ep.register
        self.modify = ep.modify
        self.unregister = ep.unregister
        self.close = ep.close
        self.fileno = ep.fileno
        self._poll = ep.poll
        self._loop = loop
        self._engine = engine
        self._hub = engine.hub
        self.waiter = None          # the greenlet waiting in poll()
        self.deadline = 0.0
        hub_loop = self._hub.loop
        self._io = hub_loop.io(ep.fileno(), 1)
        self._io.start(self._wake)
        self._prepare = hub_loop.prepare(ref=False)
        self._prepare.start(self._check)

    def _wake(self, *_) -> None:
        w = self.waiter
        if w is not None:
            self.waiter = None
            w.switch()

    def _check(self) -> None:
        """Before the hub blocks: work a greenlet queued for the loop wakes it now."""
        w = self.waiter
        if w is None:
            return
        loop = self._loop
        timers = loop._timers
        if loop.ready or (timers and timers[0][0] < self.deadline):
            self.waiter = None
            w.switch()

    def poll(self, timeout: float, maxevents: int = -1):
        hub = self._hub
        if timeout <= 0:
            # callbacks are ready: one turn of the hub (the request greenlets) first
            hub.loop.run_callback(getcurrent().switch)
            hub.switch()
            return self._poll(0, maxevents)
        if self._engine.worker.stopping:
            timeout = min(timeout, STOPPING_TICK)
        timer = hub.loop.timer(timeout)
        me = getcurrent()
        self.deadline = _monotonic() + timeout
        self.waiter = me
        timer.start(self._wake)
        try:
            hub.switch()
        finally:
            self.waiter = None
            timer.stop()
        return self._poll(0, maxevents)

    def stop(self) -> None:
        self._io.stop()
        self._prepare.stop()


class Engine:
    """One worker's gevent engine: built in Worker.run before its loops."""

    def __init__(self, worker):
        self.worker = worker
        opts = worker.opts
        self.monkey = bool(getattr(opts, "gevent_monkey_patch", False))
        self.early = bool(getattr(opts, "gevent_early_monkey_patch", False))
        self.wait_for_hub = bool(getattr(opts, "gevent_wait_for_hub", False))
        self.mercy = float(getattr(opts, "worker_reload_mercy", 60) or 60)
        gevent.reinit()         # a hub made in the master before the fork starts afresh here
        self.hub = get_hub()
        self.epolls: list[_HubEpoll] = []
        api.use_local(_GreenletLocal())

    def adopt(self, thread_loop) -> None:
        """A thread loop of this worker: its epoll on the hub, its cores spawning greenlets."""
        loop = thread_loop.loop
        ep = _HubEpoll(loop.ep, loop, self)
        loop.ep = ep
        self.epolls.append(ep)
        for core in thread_loop.cores:
            self._init_core(core)

    def _init_core(self, core) -> None:
        run_callback = self.hub.loop.run_callback
        green = None    # the core's greenlet (made again if it died)

        def start(job) -> None:
            # the core is idle (its greenlet parked) whenever a job is given; should a job ever
            # come while its greenlet is busy, it gets a greenlet of its own (the core's now)
            nonlocal green
            g = green
            if g is None or g.dead or not g._uwsgi_idle:
                g = green = greenlet(self._serve_core, self.hub)
            g._uwsgi_idle = False
            run_callback(g.switch, job)

        def to_loop():
            self._wait(core)

        def resume():
            start((_STEP, core, None, None))

        def spawn(core, plugin, req) -> bool:
            if not getattr(plugin, "gevent_greenlets", False):
                core.to_loop = None
                core._resume = core.step
                return False
            core.to_loop = to_loop
            core._resume = resume
            start((_RUN, core, plugin, req))
            return True

        core.spawn = spawn

    def start(self) -> None:
        """Just before the worker serves: --gevent-monkey-patch (uWSGI patches at this point);
        after an early patch in the master, the `thread` module it left to the workers.
        Not aggressive: select.epoll stays for the server's own loops (which the hub watches)."""
        if self.monkey or self.early:
            from gevent import monkey
            monkey.patch_all(aggressive=False)

    # ---- in the cores' greenlets ---------------------------------------------------------------
    def _serve_core(self, job) -> None:
        """A core's greenlet: its jobs one after another, parked on the hub in between."""
        me = getcurrent()
        contexts = hasattr(me, "gr_context")    # greenlet >= 1.0
        while True:
            kind, core, plugin, req = job
            job = None
            set_current(core)
            try:
                if kind is _RUN:
                    if contexts:
                        me.gr_context = None    # an empty contextvars context, as a new greenlet's
                    core.call_plugin(plugin, req)
                else:
                    core.step()
            except GreenletExit:
                log(f"core {core.id}: its request greenlet was killed")
                return
            except BaseException:
                log_exception("error in a gevent request greenlet:")
            plugin = req = core = None          # nothing of the request kept while parked
            job = self._park()
            if job is None:
                return

    def _park(self):
        """Wait on the hub for the next job. Anything else that switches in (a timer or a
        gevent.Timeout the app left armed) is ignored; GreenletExit ends the greenlet."""
        hub = self.hub
        me = getcurrent()
        me._uwsgi_idle = True
        while True:
            try:
                job = hub.switch()
            except GreenletExit:
                return None
            except BaseException as e:
                log(f"a stray {type(e).__name__} reached an idle gevent core: ignored")
                continue
            if type(job) is tuple and len(job) == 4 and (job[0] is _RUN or job[0] is _STEP):
                return job

    def _wait(self, core) -> None:
        """A core's api wait (uwsgid.plugins.api._arm armed core.wait): wait for it on the hub,
        in this greenlet; ready_fd / timed_out say what fired, as after a loop wait."""
        w = core.wait
        core.wait = None
        me = getcurrent()
        hub = self.hub
        if me is hub or me.parent is None:
            raise RuntimeError("a uwsgi wait outside a request greenlet under --gevent")
        hub_loop = hub.loop
        io = timer = None
        try:
            if w is None:       # uwsgi.suspend(): one turn for the others
                hub_loop.run_callback(me.switch, "turn")
            else:
                if w.fd >= 0:
                    io = hub_loop.io(w.fd, 2 if w.events & Wait.WRITE else 1)
                    io.start(me.switch, "fd")
                if w.timeout is not None:
                    timer = hub_loop.timer(w.timeout)
                    timer.start(me.switch, "timeout")
                if io is None and timer is None:
                    hub_loop.run_callback(me.switch, "turn")
            what = hub.switch()
        except OSError as e:
            log(f"wait on fd {w.fd} failed ({e.strerror or e})")
            what = "timeout"
        finally:
            if io is not None:
                io.stop()
            if timer is not None:
                timer.stop()
        core.ready_fd = w.fd if what == "fd" and w is not None else -1
        core.timed_out = what == "timeout"
        set_current(core)

    # ---- the end ------------------------------------------------------------------------------
    def finish(self) -> None:
        """The worker's loops are done: with --gevent-wait-for-hub, the app's own greenlets too."""
        for ep in self.epolls:
            ep.stop()
        if self.wait_for_hub:
            try:
                if not self.hub.join(timeout=self.mercy):
                    log(f"worker {self.worker.id}: the gevent hub still had work after "
                        f"{self.mercy:g}s (--worker-reload-mercy): leaving it")
            except Exception:
                log_exception("error while waiting for the gevent hub:")
        log(f"goodbye to the gevent Hub on worker {self.worker.id} (pid: {self.worker.pid})")
