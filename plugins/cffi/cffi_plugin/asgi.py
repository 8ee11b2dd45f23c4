"""ASGI apps on the cffi plugin: which apps are ASGI, the asyncio loop of each worker, lifespan,
and a request's way in (asgi_http; asgi_ws for the websocket scope) and the worker's way out
(draining, lifespan shutdown).

An app is ASGI when given with --asgi MOD:APP, or when a --mount/--module callable is a coroutine
function (async def app(scope, receive, send), or an object whose __call__ is one: Starlette,
FastAPI, Django's ASGIHandler); WSGI callables never are. ASGI 2 apps (a class taking the scope,
whose instance is awaited with receive and send) are recognised for --asgi, as uvicorn does.

Per worker: the first core's init (the worker's loop 0) makes the asyncio Driver and runs each
ASGI app's lifespan startup; a failure (lifespan.startup.failed, or an error after the startup
event was received) is an AppLoadError, so the worker exits 22 and, with --need-app, the
instance stops with that one line. An app that does not speak lifespan (Django: raises on the
scope) is served without it, as uvicorn's "auto" mode does.
"""

from __future__ import annotations

import asyncio
import os

from uwsgid.plugins.contract import AppLoadError
from uwsgid.util.log import log

from .asgi_http import build_scope, serve
from .asgi_loop import Driver
from .asgi_ws import going_away, is_websocket, serve_websocket, websocket_scope
from .loader import is_asgi, user_traceback

DRAIN_DEFAULT = 30.0     # seconds a graceful stop waits for the apps' tasks (--worker-reload-mercy)
SHUTDOWN_DEFAULT = 30.0  # seconds for lifespan shutdown


def as_asgi3(obj, what: str):
    """The ASGI 3 form of an --asgi callable: itself, or an ASGI 2 app (app(scope) returns what
    is awaited with receive and send) wrapped."""
    if is_asgi(obj):
        return obj
    if not callable(obj):
        raise AppLoadError(f"--asgi {what}: {type(obj).__name__} is not an ASGI application")

    async def asgi2(scope, receive, send):
        await obj(scope)(receive, send)
    return asgi2


def adapter(obj, record, spec: str, forced: bool):
    """Apps.asgi_adapter: record becomes an ASGI app; returns the ASGI 3 callable."""
    record.asgi = AsgiApp(record, f"{spec} (mountpoint='{record.mountpoint}')")
    return as_asgi3(obj, spec) if forced else obj


class AsgiApp:
    """What an App record holds for an ASGI app: its lifespan state and its worker's loop."""

    __slots__ = ("record", "state", "lifespan", "name")

    def __init__(self, record, name: str):
        self.record = record
        self.name = name
        self.state: dict = {}       # the lifespan state, copied into each request's scope
        self.lifespan = None        # the running lifespan (when the app speaks it)

    def request(self, req, script_name: str, path_info: str):
        driver = _drivers.get(req.core.loop)
        if driver is None:
            raise RuntimeError("ASGI request on a loop without an asyncio driver")
        scope = build_scope(req, script_name, path_info, self.state)
        if is_websocket(req.vars):
            return serve_websocket(req, driver, self.record, websocket_scope(scope, req.vars))
        return serve(req, driver, self.record, scope)


# ---- the worker's asyncio loop -----------------------------------------------------------------

_drivers: dict = {}      # worker Loop -> Driver (one: --threads is refused with ASGI apps)


def init_core(core, apps: list) -> None:
    """Once per core; the first core of a loop makes its Driver and runs the lifespans."""
    if core.loop in _drivers:
        return
    driver = _drivers[core.loop] = Driver(core.loop)
    install_stream_predicate(core.worker, apps)
    for app in apps:
        lifespan = Lifespan(app, driver)
        lifespan.startup()
    owner = _owner(core.worker, apps)
    if owner is not None and owner.raw is None and all(a.asgi is not None for a in owner.apps.apps):
        driver.pin()    # no WSGI app in this thread: asyncio may stay its running loop


def install_stream_predicate(worker, apps: list) -> None:
    """Tell the worker's parsers which requests are ASGI ones, to be dispatched at the end of
    their head with the body streamed (uwsgid/net/protocols/stream.py); the others (WSGI,
    Lua) keep theirs held until complete. Asked only of requests that have a body."""
    limits = getattr(worker, "limits", None)
    owner = _owner(worker, apps)
    plugins = getattr(worker, "plugins", None) or {}
    if limits is None or owner is None:
        return
    modifiers = frozenset(m for m, p in plugins.items() if p is owner)
    registry = owner.apps
    if all(a.asgi is not None for a in registry.apps):
        def streams(req) -> bool:       # only ASGI apps on these modifiers: the modifier decides
            return req.modifier1 in modifiers
    else:
        def streams(req) -> bool:       # WSGI and ASGI apps side by side: the mount decides
            if req.modifier1 not in modifiers:
                return False
            app = registry.select(_select_env(req.vars))
            return app is not None and app.asgi is not None
    limits.stream_body = streams


def _owner(worker, apps: list):
    """The plugin whose ASGI apps are `apps` (with its app registry), or None."""
    plugins = getattr(worker, "plugins", None) or {}
    owner = next((p for p in plugins.values() if getattr(p, "asgi_apps", None) is apps), None)
    return owner if owner is not None and owner.apps is not None else None


_SELECT_VARS = ("SCRIPT_NAME", "PATH_INFO", "UWSGI_APPID", "HTTP_HOST", "SERVER_NAME")


def _select_env(v: dict) -> dict:
    """The few environ keys Apps.select looks at (mountpoint, --manage-script-name, vhost)."""
    env = {}
    for key in _SELECT_VARS:
        val = v.get(key.encode())
        if val is not None:
            env[key] = val.decode("latin-1")
    return env


def shutdown(apps: list, aborted: bool, mercy: float | None) -> None:
    """The worker is leaving: wait for the apps' tasks still running (the responses are out, a
    background task may not be), then lifespan shutdown, then close the loops. Open WebSocket
    sessions are closed first (1001), so that their apps return."""
    if not aborted:
        going_away()
    for driver in list(_drivers.values()):
        if not aborted and driver.inflight:
            pending = list(driver.inflight)
            timeout = DRAIN_DEFAULT if mercy is None else mercy
            log(f"[asgi] waiting up to {timeout:g}s for {len(pending)} running ASGI task(s)")
            try:
                driver.run_blocking(asyncio.wait(pending, timeout=timeout))
            except Exception as e:
                log(f"[asgi] waiting for the running tasks failed: {e}")
        if not aborted:
            for app in apps:
                if app.lifespan is not None and app.lifespan.driver is driver:
                    app.lifespan.shutdown(SHUTDOWN_DEFAULT if mercy is None else mercy)
        for task in list(driver.inflight):
            task.cancel()
        driver.close()
    _drivers.clear()


# ---- lifespan ------------------------------------------------------------------------------

class Lifespan:
    """One app's lifespan protocol on one worker."""

    def __init__(self, app: AsgiApp, driver: Driver):
        self.app = app
        self.driver = driver
        aloop = driver.aloop
        self.queue: asyncio.Queue = asyncio.Queue()
        self.started = aloop.create_future()       # result: None, or the failure message
        self.stopped = aloop.create_future()
        self.received = False                      # the app took lifespan.startup
        self.stopping = False                      # lifespan.shutdown was sent
        self.task = None

    async def _receive(self):
        msg = await self.queue.get()
        self.received = True
        return msg

    async def _send(self, message) -> None:
        kind = message.get("type")
        if kind in ("lifespan.startup.complete", "lifespan.startup.failed"):
            if not self.started.done():
                self.started.set_result(None if kind.endswith("complete") else message.get("message") or "failed")
        elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            if not self.stopped.done():
                self.stopped.set_result(None if kind.endswith("complete") else message.get("message") or "failed")
        else:
            raise RuntimeError(f"ASGI lifespan: unexpected message {kind!r}")

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.app.state}
        try:
            await self.app.record.callable(scope, self._receive, self._send)
        except BaseException as e:
            if self.stopping:
                if not self.stopped.done():
                    log(f"[asgi] error in the lifespan shutdown of {self.app.name}:\n{user_traceback(e)}")
                    self.stopped.set_result(f"{type(e).__name__}: {e}")
            elif not self.started.done():
                if self.received:
                    log(f"[asgi] error in the lifespan startup of {self.app.name}:\n{user_traceback(e)}")
                    self.started.set_result(f"{type(e).__name__}: {e}")
                else:       # raised on the scope itself: an app without lifespan (Django)
                    self.started.set_result(_UNSUPPORTED)
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
        finally:
            # returned without a word: served without lifespan (uvicorn's "auto")
            if not self.started.done():
                self.started.set_result(_UNSUPPORTED)
            if not self.stopped.done():
                self.stopped.set_result(None)

    def startup(self) -> None:
        driver = self.driver
        self.queue.put_nowait({"type": "lifespan.startup"})
        self.task = driver.aloop.create_task(self._main())
        failure = driver.run_blocking(_first(self.started))
        if failure is _UNSUPPORTED:
            log(f"[asgi] {self.app.name}: the ASGI 'lifespan' protocol appears unsupported (served without it)")
            return
        if failure is not None:
            raise AppLoadError(f"ASGI app {self.app.name}: lifespan startup failed: {_one_line(failure)} "
                               f"(pid {os.getpid()})")
        self.app.lifespan = self
        log(f"[asgi] {self.app.name}: lifespan startup complete (pid {os.getpid()})")

    def shutdown(self, timeout: float) -> None:
        self.app.lifespan = None
        if self.task is None or self.task.done():
            return
        self.stopping = True
        self.queue.put_nowait({"type": "lifespan.shutdown"})
        try:
            failure = self.driver.run_blocking(_first(self.stopped), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            log(f"[asgi] {self.app.name}: lifespan shutdown did not finish in {timeout:g}s")
            return
        if failure is not None:
            log(f"[asgi] {self.app.name}: lifespan shutdown failed: {_one_line(failure)}")


_UNSUPPORTED = object()


async def _first(fut):
    return await asyncio.shield(fut)


def _one_line(text) -> str:
    lines = [ln for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "failed"
