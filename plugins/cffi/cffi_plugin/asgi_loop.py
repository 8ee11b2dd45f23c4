"""The asyncio loop of an ASGI worker, driven from the worker's own epoll loop (uwsgid.net.loop).

The worker's loop stays the one that blocks: it accepts, reads and parses requests (httptools),
writes responses with back-pressure, runs timers and the other plugins' cores. asyncio only runs
the app's coroutines and the app's own I/O (its database and HTTP clients):

  * asyncio's selector is an epoll fd: it is registered as a reader in the worker's loop, and
    asyncio's selector never blocks (`_Selector.select` uses timeout 0) except while `blocking`
    (lifespan start-up and shutdown, which run before and after the worker's loop);
  * `kick()` runs one asyncio iteration (its ready callbacks, its I/O, its due timers), then
    `_follow()` asks the worker's loop to come back: at the next turn when callbacks are ready,
    else at asyncio's first timer;
  * `poke()` is for the server side (a request's step resolving an app's future): the callbacks
    that made ready run at the next turn.

One asyncio loop per worker thread loop; the plugin refuses --threads with ASGI apps (lifespan
state is per loop). uvloop cannot be driven this way (libuv keeps its backend fd to itself), and
what it speeds up (transports, protocol parsing) is the worker's loop's job here: see README.md.

asyncio's internals used: `_ready` (a deque of Handles), `_scheduled` (a heap of TimerHandles)
and `_run_once()`, stable since Python 3.4; `events._set_running_loop` makes
`asyncio.get_running_loop()` work inside the app's code, only while asyncio runs, so that a WSGI
app served by the same thread may still call `asyncio.run()`.
"""

from __future__ import annotations

import asyncio
import selectors
import sys
from asyncio import events

from uwsgid.plugins import api

_set_running_loop = events._set_running_loop
_Task = asyncio.Task
RUN_READY_ROUNDS = 4


class _Selector(selectors.EpollSelector):
    """Never blocks unless told to: the worker's loop does the waiting. Not polled at all for a
    kick that is not about I/O (`polling` false: a poke or a timer): an asyncio fd that is ready
    keeps this epoll fd readable in the worker's loop, whose next turn kicks with polling."""

    blocking = False
    polling = True

    def select(self, timeout=None):
        if not self.polling:
            return []
        return super().select(timeout if self.blocking else 0)


class _EventLoop(asyncio.SelectorEventLoop):
    """asyncio's loop, whose call_soon can hand the callback back instead of queueing it: how
    Driver.start_task runs a new task's first step at once (Python 3.12's eager tasks)."""

    _taken = None       # a list while Driver.start_task creates a task

    def call_soon(self, callback, *args, context=None):
        taken = self._taken
        if taken is not None and not taken:
            taken.append((callback, args, context))
            return None     # the C Task ignores the handle of its first step
        return super().call_soon(callback, *args, context=context)


class Driver:
    """One asyncio loop driven by one worker loop (see the module doc)."""

    def __init__(self, loop):
        self.loop = loop                  # the worker's uwsgid.net.loop.Loop
        self.selector = _Selector()
        self.aloop = _EventLoop(self.selector)
        asyncio.set_event_loop(self.aloop)
        # what run_forever would install: an abandoned async generator (a streaming response's
        # body after the client left) is closed on this loop, its finally blocks run
        sys.set_asyncgen_hooks(firstiter=self.aloop._asyncgen_firstiter_hook,
                               finalizer=self.aloop._asyncgen_finalizer_hook)
        self._ready = self.aloop._ready
        self._pending = False             # a kick is queued on the worker's loop
        self._timer = None                # the worker loop's timer for asyncio's first timer
        self._timer_when = 0.0
        self.closed = False
        self.inflight: set = set()        # the apps' request tasks, awaited by a graceful stop
        self.pinned = False               # asyncio stays the thread's running loop (pin())
        self.kicking = False              # an asyncio iteration of kick() is running
        self.woken: list = []             # cores woken during it, stepped right after it
        loop.add_reader(self.selector.fileno(), self.kick)

    def poke(self) -> None:
        """Something made asyncio callbacks ready: run them at the worker loop's next turn."""
        if not self._pending:
            self._pending = True
            self.loop.ready.append(self._kick_timers)

    def kick(self) -> None:
        """One asyncio iteration, now, in the worker loop's thread (asyncio's epoll fd is
        readable: its I/O is polled)."""
        self._pending = False
        if self.closed:
            return
        aloop = self.aloop
        pinned = self.pinned
        if not pinned:
            _set_running_loop(aloop)
        self.kicking = True
        try:
            aloop._run_once()
            if self._ready:
                # what that made ready (a timer's future resolved: its task's wake-up) runs now,
                # not at another kick one loop turn later
                self._rounds()
        finally:
            self.kicking = False
            if not pinned:
                _set_running_loop(None)
        self._follow()
        woken = self.woken
        if woken:
            self._step_woken(woken)

    def wake(self, core) -> None:
        """A parked core's request can go on (the app sent something, or ended). Inside kick()
        it steps right after the asyncio iteration, outside the app's task: the request ends
        before the loop reads the client's next request, which the native lane can then take
        (a core still busy with it would leave it to the Python parser). Elsewhere: at the loop's
        next turn (api.resume)."""
        if self.kicking:
            self.woken.append(core)
        else:
            api.resume(core)

    def _step_woken(self, woken: list) -> None:
        self.woken = []
        for core in woken:
            if core.wait is api._PARKED:    # still parked for this request (not ended meanwhile)
                core.wait = None
                core._resume()

    def _kick_timers(self) -> None:
        """kick() without polling asyncio's I/O (no epoll_wait): for ready callbacks and timers."""
        selector = self.selector
        selector.polling = False
        try:
            self.kick()
        finally:
            selector.polling = True

    def start_task(self, coro):
        """An asyncio.Task for coro, its first step run now (no handle queued, no loop turn),
        then what that made ready (run_ready). asyncio.current_task() is the task from the
        first step on, as anyio's cancel scopes (Starlette, FastAPI) need."""
        aloop = self.aloop
        if aloop._task_factory is not None:     # the app's own factory: asyncio's way
            task = aloop.create_task(coro)
            self.run_ready()
            return task
        taken = aloop._taken = []
        try:
            task = _Task(coro, loop=aloop)
        finally:
            aloop._taken = None
        pinned = self.pinned
        if not pinned:
            _set_running_loop(aloop)
        try:
            if taken:
                callback, args, context = taken[0]
                context.run(callback, *args)
            if self._ready:
                self._rounds()
        finally:
            if not pinned:
                _set_running_loop(None)
        self._follow()
        return task

    def run_ready(self) -> None:
        """Run asyncio's ready callbacks now, without polling its I/O (a request's first steps)."""
        pinned = self.pinned
        if not pinned:
            _set_running_loop(self.aloop)
        try:
            self._rounds()
        finally:
            if not pinned:
                _set_running_loop(None)
        self._follow()

    def _rounds(self) -> None:
        """A few rounds of the ready callbacks: what the app's steps made ready (its task's done
        callbacks, a wake-up) runs now too, instead of costing a kick at the next turn."""
        ready = self._ready
        for _ in range(RUN_READY_ROUNDS):
            n = len(ready)
            if not n:
                break
            while n:
                n -= 1
                handle = ready.popleft()
                if not handle._cancelled:
                    handle._run()

    def _follow(self) -> None:
        if self._ready:
            self.poke()
            return
        scheduled = self.aloop._scheduled     # read each time: asyncio replaces the list when it prunes it
        if not scheduled:
            return
        when = scheduled[0].when()
        t = self._timer
        if t is not None:
            if not t.cancelled and self._timer_when <= when:
                return      # an earlier (or the same) wake-up is already set
            t.cancel()
        self._timer_when = when
        self._timer = self.loop.call_later(max(0.0, when - self.aloop.time()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._kick_timers()

    def pin(self) -> None:
        """asyncio stays the thread's running loop between iterations: for a worker whose
        Python apps are all ASGI (nothing else in the thread would call asyncio.run()), this
        saves two _set_running_loop calls per request and kick, each a getpid() system call."""
        self.pinned = True
        _set_running_loop(self.aloop)

    def unpin(self) -> None:
        self.pinned = False
        _set_running_loop(None)

    def run_blocking(self, coro, timeout: float | None = None):
        """Run coro to its end with asyncio blocking in its own selector (lifespan, shutdown,
        outside the worker loop's serving). Raises asyncio.TimeoutError after `timeout`."""
        pinned = self.pinned
        if pinned:
            self.unpin()    # run_until_complete refuses to run inside a running loop
        self.selector.blocking = True
        try:
            if timeout is not None:
                coro = asyncio.wait_for(coro, timeout)
            return self.aloop.run_until_complete(coro)
        finally:
            self.selector.blocking = False
            if pinned:
                self.pin()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.pinned:
            self.unpin()
        if self._timer is not None:
            self._timer.cancel()
        try:
            self.loop.remove_reader(self.selector.fileno())
        except (OSError, ValueError):
            pass    # the worker's loop is already closed
        try:
            self.aloop.close()
        except Exception:
            pass
