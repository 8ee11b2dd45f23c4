"""A core: one request slot of a thread loop, and the life of a request on it.

A core is what uWSGI calls an async core, and the plugin contract too (`req.core`,
`init_core(core)`): --async N gives each thread loop N cores that take turns; without it a
thread's loop has a single core. A core runs one request at a time; its fields (`id`,
`worker`, `state`, `wait`, `ready_fd`, `timed_out`) are read by plugins and uwsgid.plugins.api.

The life of a request on a core:

    ThreadLoop.dispatch -> run(conn, req): the scoreboard, a static file (uwsgid.static, only
                           with a static option), else the plugin's request(req)
        None        the response is complete: finish()
        generator   step() runs it one yield at a time. After each yield the response written
                    so far is flushed, then the core suspends on the wait the app armed
                    (api.async_sleep / wait_fd_*: _arm, resumed by _fd_ready / _wait_timeout),
                    on a slow client (conn.on_drain), or gives the loop's other cores a turn
                    (loop.ready). A wait armed inside request() itself, before it returned the
                    generator, applies to the generator's first step.
    finish() / _fail() (500 or a visibly cut body) / _client_gone()
    -> _done(): the connection first, then the plugin's after_request, the scoreboard, the
       request log, and ThreadLoop.core_done (the next waiting request, or accept again).
    offloaded(): a static file's body went to an offload thread; _done() now, the connection's
       request ends when the file is out (uwsgid.static.serve, which also calls finish() and
       _client_gone() as the core's own paths do).
"""

from __future__ import annotations

import threading
import time

from uwsgid import static
from uwsgid.net.raw import RawRequest
from uwsgid.plugins.api import Wait, set_current
from uwsgid.util.log import log, log_exception

_monotonic = time.monotonic
_time = time.time
router = None       # the internal routing's Router, handed down by uwsgid.routing (use_router)


def use_router(r) -> None:
    """--route* given: every core made from now on runs the chains (set before the fork)."""
    global router
    router = r

SINGLE_CORE_BURST = 64     # yields stepped back to back when a loop has one core and nothing waits


class Core:
    """One request slot: an async core or a thread's core. Fields are read by plugins and api."""

    __slots__ = ("id", "worker", "thread_loop", "loop", "state", "request", "requests", "wait", "ready_fd",
                 "timed_out", "thread", "gen", "conn", "_timer", "_deadline", "_wait_fd", "_wait_prev", "_idle_fd", "_resume",
                 "_woken",
                 "exceptions", "after", "static", "to_loop", "spawn", "routes", "take_request", "defer_request",
                 "lane_replay")

    def __init__(self, cid: int, thread_loop):
        self.id = cid
        self.thread_loop = thread_loop
        self.worker = thread_loop.worker
        self.loop = thread_loop.loop
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
        self._timer = None      # this core's entry in the loop's timer heap (see _arm)
        self._deadline = None   # when the armed wait times out (None: it does not)
        self._wait_fd = -1
        self._wait_prev = None
        self._idle_fd = -1      # a kept fd whose reader stays ours between two waits on it (_cancel_wait)
        self._resume = self.step
        # what a fired wait calls: step(), or the stepper of a request the native lane deferred
        # (a Lua core waiting on a cosocket: plugins/lua/lua_plugin/lane.py), which has no Request
        self._woken = self.step
        self.after = None       # the serving plugin's after_request, for _done
        self.lane_replay = None     # the native lane's requests held for a free core (native_lane._Driver)
        self.static = static.handler    # None unless a static option is given
        self.routes = router            # None unless a --route* option is given (uwsgid.routing)
        # set by a suspend engine (--greenlet) while its green thread runs this core's request:
        # switches back to the loop after a wait is armed (uwsgid.plugins.api._arm)
        self.to_loop = None
        # set by a loop engine (--gevent: uwsgid.server.gevent_loop): spawn(core, plugin, req) ->
        # True when it took the request into a greenlet of its own (which calls call_plugin)
        self.spawn = None
        # set while the native lane serves this core's loop (uwsgid/server/native_lane.py): the
        # request inside the app, made when the app asks for it (uwsgid.plugins.api.current_request)
        self.take_request = None
        # and the lane's way to answer that request later (native_lane._Driver.defer): its token
        self.defer_request = None

    # ---- running a request ------------------------------------------------------------------
    def _begin(self, conn, req) -> None:
        """The request takes this core: its fields, its start, the counters."""
        self.conn = conn
        self.request = req
        req.core = self
        req.start = _monotonic()
        req.start_wall = _time()
        req.switches = 1
        self.requests += 1
        self.worker.requests += 1

    def run(self, conn, req) -> None:
        w = self.worker
        self._begin(conn, req)
        # A wait belongs to the request that armed it: reset here and when it fires, so that
        # one armed inside request() is still there for the generator's first step.
        self.wait = None
        set_current(self)
        try:
            sb = w.scoreboard
            if sb is not None:
                sb.begin(w.id, self.id, req.vars.get(b"REQUEST_URI", b""))
            rt = self.routes
            if rt is not None and rt.request(self, req):
                return      # answered (or dropped) by the request chain
            st = self.static
            if st is not None and st.serve(self, req):
                return      # a static file: answered, its body on the way, or offloaded
            plugin = w.plugins.get(req.modifier1)
            if req.__class__ is RawRequest:     # a --raw-socket connection (uwsgid/net/raw.py)
                res = _raw_request(plugin, req)
            elif plugin is None or not plugin.has_app():
                res = plugin = False
            else:
                self.after = plugin.after_request
                spawn = self.spawn
                if spawn is not None and spawn(self, plugin, req):
                    return      # the request goes on in a greenlet of the engine's (call_plugin)
                res = plugin.request(req)
        except Exception:
            self._fail()
            return
        if plugin is False:
            self._no_app(w.plugins.get(req.modifier1))
            return
        self.respond(res)

    def adopt(self, conn, req) -> None:
        """A request the native lane began (its app called, the scoreboard's begin set): this
        core runs the rest, from respond() on, as if run() had started it."""
        self._begin(conn, req)
        conn.busy = True
        set_current(self)

    def call_plugin(self, plugin, req) -> None:
        """The plugin's part of run(), for a loop engine that runs it elsewhere (a greenlet)."""
        try:
            res = plugin.request(req)
        except Exception:
            self._fail()
            return
        self.respond(res)

    def respond(self, res) -> None:
        """What plugin.request returned: the response is complete (None), or a body to step."""
        if res is None:
            self.finish()
            return
        self.gen = res
        if self.wait is None:
            self.step()
        else:
            self._wait_before_first_step()

    def _wait_before_first_step(self) -> None:
        """request() armed a wait and returned its generator: what it wrote goes out now, as at
        a yield, and the generator's first step runs when the wait fires."""
        req = self.request
        try:
            if req._buf:
                req.flush()
        except Exception:
            self._fail()
            return
        if self.conn.closed:
            self._client_gone()
            return
        self._arm(self.wait)

    def step(self) -> None:
        gen = self.gen
        req = self.request
        conn = self.conn
        if gen is None or req is None:
            return
        single = self.thread_loop.single
        ready = self.loop.ready
        burst = 0
        while True:
            if conn.closed:
                self._client_gone()
                return
            # self.wait is None here: reset by run() and by a wait firing
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
            stream = req.stream
            if stream is not None and stream.refused:
                self._done()    # a streamed body refused mid-way: the connection answers the error
                return
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
        loaded = loaded_apps(self.worker.plugins)
        if plugin is None:
            log(f"-- unavailable modifier requested: {req.modifier1} ({_desc(req)}): no plugin serves it; "
                f"loaded: {loaded} --")
        else:
            log(f"--- no {plugin.title or plugin.name} app is loaded for modifier1 {req.modifier1} "
                f"({_desc(req)}); loaded: {loaded}; check your startup logs, or the modifier1 your "
                f"socket or nginx sends ---")
        req.app_id = -1
        req.error_response(503, b"Service Unavailable", b"Service Unavailable\n")
        self.finish()

    def offloaded(self) -> None:
        """The response's body is an offload thread's now (uwsgid.static): the core is free (its
        bookkeeping, the log line, the next request); the connection's request ends later."""
        self.conn = _PARKED
        self._done()

    def _client_gone(self, why: str | None = None) -> None:
        """The client is gone (or dropped: `why`, the log line): the request ends here."""
        req = self.request
        if why:
            log(why)
        elif not getattr(self.worker, "ignore_write_errors", False):    # --ignore-write-errors: uWSGI's silence
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
        if self._idle_fd >= 0:
            self._drop_idle()
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
            # the final chain runs after the response is out; False: `donotlog`
            if req.route is None or self.routes.done(req):
                w.reqlog(req)
        except Exception:
            log_exception("error while logging a request:")
        self.thread_loop.core_done(self)
        replay = self.lane_replay
        if replay is not None:
            replay()
        if w.recycles:
            w.after_request()

    # ---- waits --------------------------------------------------------------------------------
    def _arm(self, w: Wait) -> None:
        loop = self.loop
        fd = w.fd
        idle = self._idle_fd
        if idle >= 0 and fd >= 0:
            if idle == fd and not w.events & Wait.WRITE and loop._readers.get(fd) == self._fd_ready:
                # the same fd again (a WebSocket's next message): still registered, ours
                self._idle_fd = -1
                self._wait_prev = None
                self._wait_fd = fd
                fd = -1         # (nothing to register)
            else:
                self._drop_idle()
        if fd >= 0:
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
                loop.ready.append(self._resume if self.request is not None else self._woken)
                return
            self._wait_fd = fd
        if w.timeout is not None:
            # One heap entry per core, not one per wait: a wait that ends before its timeout
            # leaves the entry in place, and the next wait with a later deadline reuses it
            # (_on_timer moves it on). Only an earlier deadline pushes a new one.
            when = _monotonic() + w.timeout
            self._deadline = when
            t = self._timer
            if t is None or t.when > when:
                if t is not None:
                    t.cancel()
                self._timer = loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        when = self._deadline
        if when is None:
            return          # its wait ended before the timeout
        if when > _monotonic():
            self._timer = self.loop.call_at(when, self._on_timer)    # a later wait's deadline
            return
        self._wait_timeout()

    def _cancel_wait(self) -> None:
        self._deadline = None   # the timer entry stays for the next wait (see _arm)
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
            elif fd in loop._kept:
                # a kept fd (a WebSocket, a raw socket) is mostly waited on again by the next
                # step: its reader stays until then, or until an event comes while we do not
                # wait on it (_fd_ready) or another wait is armed (_arm)
                self._idle_fd = fd
            else:
                loop.remove_reader(fd)

    def _drop_idle(self) -> None:
        fd = self._idle_fd
        self._idle_fd = -1
        loop = self.loop
        if loop._readers.get(fd) == self._fd_ready:     # (not if another took the fd since)
            loop.remove_reader(fd)

    def fd_closed(self, fd: int) -> None:
        """The loop forgot fd, a kept fd closed under this core (Loop.forget), at the turn after:
        the wait on it ends (the app finds it closed), not a wait armed on another fd since."""
        if fd == self._wait_fd:
            self._fd_ready()
        elif fd == self._idle_fd:
            self._idle_fd = -1      # its reader went with it

    def _fd_ready(self) -> None:
        fd = self._wait_fd
        if fd < 0:
            # an event on the idle fd (see _cancel_wait), or a late call (the loop's forget of
            # a kept fd): this wait already ended
            if self._idle_fd >= 0:
                self._drop_idle()
            return
        self._cancel_wait()
        self.ready_fd = fd
        self.timed_out = False
        self.wait = None
        self._woken()

    def _wait_timeout(self) -> None:
        self._cancel_wait()
        self.ready_fd = -1
        self.timed_out = True
        self.wait = None
        self._woken()


class _Parked:
    """The connection of an offloaded response, as _done sees it: ending its request is the
    offload's business (a null object: _done pays nothing for the offload case)."""
    __slots__ = ()
    closed = False

    def request_done(self, req) -> None:
        pass


_PARKED = _Parked()


def _raw_request(plugin, req):
    """The raw handler of the plugin --raw-modifier1 names runs the connection (None or a
    generator, as Plugin.request); without one the connection is logged and closed."""
    if plugin is None or not plugin.has_raw():
        what = f"the {plugin.title or plugin.name} plugin has" if plugin is not None else "no plugin serves it, and has"
        log(f"--- raw connection from {req.conn.peer} on modifier1 {req.modifier1}: {what} no raw handler "
            f"(--python-raw for 0, --lua-raw for 6; --raw-modifier1 picks the plugin) ---")
        req.error_response(503, b"Service Unavailable", b"")
        return None
    return plugin.raw_request(req)


def loaded_apps(plugins: dict) -> str:
    """'Lua (WSAPI) on modifier1 6, ...' for the plugins that have an app, or 'no app'."""
    apps = [f"{p.title} on modifier1 {m1}" for m1, p in sorted(plugins.items()) if p.title and p.has_app()]
    return ", ".join(apps) or "no app"


def _desc(req) -> str:
    if req is None:
        return "?"
    uri = req.vars.get(b"REQUEST_URI", b"")
    return f"{req.method.decode('latin-1')} {uri[:200].decode('latin-1')}"
