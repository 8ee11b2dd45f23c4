"""Greenlet cores (--greenlet, uWSGI's greenlet suspend engine; --ugreen is its alias here):
under --async N each Python request runs in a greenlet of its own, so uwsgi.async_sleep(),
wait_fd_read()/wait_fd_write(), suspend() and a blocking uwsgi.websocket_recv() give up the
core *inside* the call: a plain PEP 3333 app that never yields b"" still lets the other cores
of its loop run. Imported only when the option is given (the `greenlet` package from PyPI).

How it fits the core (uwsgid/server/core.py), which knows nothing of greenlets:
  - GreenResponse.run() starts the request's greenlet (the app call, then its body) and
    switches into it. If the greenlet ends without waiting, the response is complete (None),
    exactly as without the engine.
  - Otherwise the greenlet switched back after an api wait armed the core's wait (the core's
    `to_loop` is this request's `_GreenRun.to_loop` while it runs), or at a body yield (every
    yield of the body, b"" included, is a step for the core: "yield b''" apps keep working).
    run() returns the _GreenRun, an iterator the core steps like any streamed body:
    it flushes, suspends on the armed wait (or gives the other cores a turn), and its next
    step switches into the greenlet again, which returns from the wait.
  - The core closing it (client gone, the response failed) kills the greenlet
    with GreenletExit where it waits: the app's `finally` blocks run. An exception escaping
    the greenlet reaches the core from the step, as from a generator: a 500 before the
    headers, a visibly cut body after.
"""

from __future__ import annotations

from greenlet import GreenletExit, getcurrent, greenlet

from .response import Response


class _GreenRun:
    """One request's greenlet and how the core drives it."""

    __slots__ = ("g", "core", "response", "closing", "started", "waiter")

    def __init__(self, core, response):
        self.core = core
        self.response = response
        self.closing = False
        self.started = False
        self.waiter = None      # the greenlet in a wait: the request's own, or one the app made
        self.g = greenlet(self._main)

    def _main(self, app_callable, environ):
        res = Response.run(self.response, app_callable, environ)
        if res is None:
            return
        try:
            for _ in res:
                # a body yield: the core flushes, waits if a wait is armed, lets others run
                self.g.parent.switch()
        finally:
            res.close()

    def to_loop(self) -> None:
        """The core's `to_loop` (uwsgid.plugins.api): from inside the greenlet, a wait armed,
        back to whoever resumed us (the core's step, on the loop); returns when it fires."""
        if self.closing:
            # killed (client gone): a wait in the app's cleanup is not waited for
            self.core.wait = None
            raise GreenletExit
        resp = self.response
        if resp is None:        # a raw handler (raw_tcp.py): nothing to hand over at a wait
            self.waiter = getcurrent()
            try:
                self.g.parent.switch()
            finally:
                self.waiter = None
            return
        resp.park()
        self.waiter = getcurrent()
        try:
            self.g.parent.switch()
        finally:
            self.waiter = None
            resp.unpark()

    # ---- what the core steps (an iterator with close(), as a generator body is) ----------
    def __iter__(self):
        return self

    def __next__(self):
        """One step: run the greenlet to its next switch (StopIteration once it has ended)."""
        if not self.started:
            self.started = True
            return None     # the switch run() returned on: the core flushes, then waits or steps
        g = self.g
        if g.dead:
            raise StopIteration
        g.parent = getcurrent()     # a switch out (or the end) comes back here
        try:
            waiter = self.waiter
            (g if waiter is None else waiter).switch()
        except BaseException:
            self.core.to_loop = None
            raise
        if g.dead:
            self.core.to_loop = None
            raise StopIteration
        return None

    def close(self) -> None:
        """The core abandons the response (client gone, an error): kill the greenlet where it
        waits, even before its first step."""
        try:
            if not self.g.dead:
                self._kill()
        finally:
            self.core.to_loop = None

    def _kill(self) -> None:
        self.closing = True
        g = self.g
        g.parent = getcurrent()
        waiter = self.waiter
        # raised where it waits: the app's finally blocks run
        (g if waiter is None else waiter).throw(GreenletExit)
        if not g.dead:
            # it caught GreenletExit and switched again (a body yield): drop it
            g.parent = getcurrent()
            g.throw(GreenletExit)


class GreenResponse(Response):
    """The cffi plugin's Response with the request run in a greenlet (cffi_plugin binds it
    in place of Response under --greenlet: nothing changes without the option)."""

    __slots__ = ()

    def run(self, app_callable, environ):
        core = getattr(self.req, "core", None)
        if core is None or not hasattr(core, "to_loop") or core.to_loop is not None:
            # not on a core of ours (a custom worker loop), or nested: run as usual
            return Response.run(self, app_callable, environ)
        run = _GreenRun(core, self)
        core.to_loop = run.to_loop
        try:
            run.g.switch(app_callable, environ)
        except BaseException:
            core.to_loop = None
            raise
        if run.g.dead:
            core.to_loop = None
            return None
        return run
