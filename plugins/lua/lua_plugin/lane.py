"""The Lua app on the native lane (uwsgid/server/native_lane.py, core/cpython/lane.c): the lane
reads the request and hands its uwsgi vars block (an HTTP head encoded as one) to `call`, which
runs the app on the core's lua_State as response.handle does; a response that is whole after
the app's first slice (a string body, or a body function done in one go) goes back to the lane
as (status line, headers, body), which sends it; anything else (a streamed body, an error, a
WebSocket) goes on in response.answered on a Request the lane's driver makes. The state's
per-request end (io.write's partial line, the GC step of --lua-gc-freq) runs once the lane's
response is out, as after_request does on the Python path.

A body that waits in its first slice (a cosocket's read under --async: uwsgi.wait_fd_read) is
deferred (core.defer_request, core/cpython/lane_defer.c): the core keeps the request, its waits
wake _Deferred.step (core._woken) instead of a Request's steps, the body's slices are collected,
and the whole response goes out from C at the body's end (token.owner.complete), without a
Request or a Connection in Python. Anything else on the way (Python asks for the request, a body
error, a shape the lane does not send) takes the request to the Python path (_Deferred.take),
which goes on with the same body iterator. UWSGI_LANE_NO_DEFER=1 turns deferring off.
"""

from __future__ import annotations

import os

from uwsgid.plugins.api import current_core, set_current
from uwsgid.plugins.contract import LaneApp

from .response import (
    B_END,
    B_WAIT,
    OK,
    BadResponse,
    _stream,
    answered,
    call_failed,
    next_slice,
    split_headers,
    status_line,
)


class _PendingRequest:
    """state.req while the app runs on the lane: there is no Request yet. The first time Python
    code asks anything of it (env.input, uwsgi.set_logvar, a flush before a blocking call), the
    core's take_request makes the Request and the lane hands the request to the Python path."""

    __slots__ = ("core", "st")

    def __init__(self, st):
        self.core = None    # the core of the request inside the app (set by call)
        self.st = st

    def __getattr__(self, name):
        req = self.core.request     # made already (by this or by the uwsgi API)
        if req is None:
            take = self.core.take_request
            req = take() if take is not None else None
            if req is None:
                raise AttributeError(name)
        self.st.req = req
        return getattr(req, name)


class _Deferred:
    """A deferred request's body (its collector, and state.req while it runs): each wake-up
    drives one slice of it (next_slice, as _stream does for a Request, without a generator in
    between), its writes are kept here until the body ends. The first attribute Python asks
    for that is not here takes the request (take)."""

    __slots__ = ("st", "core", "token", "line", "headers", "chunks", "req")

    def __init__(self, st, core, token, line: bytes, headers: list, chunk: bytes):
        self.st = st
        self.core = core
        self.token = token
        self.line = line
        self.headers = headers
        self.chunks = [chunk] if chunk else []
        self.req = None     # the Request, once taken

    websocket = None

    def write(self, data: bytes) -> None:
        req = self.req
        if req is None:
            self.chunks.append(data)
        else:
            req.write(data)

    def __getattr__(self, name):
        return getattr(self.take(), name)

    def step(self) -> None:
        """core._woken: the body's wait fired; one more slice of it."""
        core = self.core
        set_current(core)
        st = self.st
        st.req = self       # the state is shared with the thread's other cores
        try:
            state = next_slice(st, self, core.id, st.lupa.LuaMemoryError)
        except Exception as exc:
            st.abandon(core.id)
            self._failed(exc)
            return
        if state == B_END:
            self._end()
        elif self.req is not None:      # taken during the slice: the core steps it from now on
            self._handover()
        elif core.wait is not None:
            core._arm(core.wait)
        else:
            core.loop.ready.append(self.step)   # a slice without a wait: a turn for the others

    def _end(self) -> None:
        core = self.core
        core._woken = core.step
        if self.req is None:
            token = self.token
            if token.owner.complete(token, self.line, self.headers, b"".join(self.chunks)):
                return
            self.take()     # a shape the lane leaves to the Python path
        core.respond(None)  # the body is done: the core finishes the Request

    def _failed(self, exc) -> None:
        """The body failed (logged by next_slice): nothing was sent, the core answers 500."""
        self.core._woken = self.core.step
        req = self.req if self.req is not None else self.take(head=False)
        req.core.respond(_raising(exc))

    def take(self, head: bool = True):
        """The Python path takes the request: its Request, the head and what the body wrote."""
        req = self.req
        if req is not None:
            return req
        token = self.token
        req = self.req = token.owner.take_deferred(token)
        self.st.req = req
        if head:
            req.start_response(self.line, self.headers)
            for chunk in self.chunks:
                req.write(chunk)
        self.chunks = []
        return req

    def _handover(self) -> None:
        """The rest of the body as the Python path drives a Request's (_stream, which resumes it
        at its first next())."""
        core = self.core
        core._woken = core.step
        st = self.st
        gen = _stream(st, self, core.id, st.lupa.LuaMemoryError)
        next(gen)
        core.respond(gen)


def _raising(exc):
    """A body that raises exc at its first step: the core's _fail answers (a 500, logged)."""
    raise exc
    yield


def lane_app(plugin, core) -> LaneApp | None:
    """The loop's cores share its lua_State (state.py); a request runs in the slot of the core
    the lane names as the current one (uwsgid/server/native_lane.py)."""
    st = core.state.get("lua")
    if st is None or not plugin.has_app():
        return None
    app_path = plugin.app_path
    pending = _PendingRequest(st)
    run = st.call
    defers = not os.environ.get("UWSGI_LANE_NO_DEFER")

    def call(block: bytes):
        core = pending.core = current_core()
        st.req = pending
        if st.memory_near_cap():
            st.recover_memory()
        res = run(block, app_path, core.id)
        if res[0] == OK and res[4] == B_END and st.req is pending:
            try:
                line = status_line(res[1])
            except BadResponse:
                return res      # answered() words it
            chunk = res[3]
            return line, split_headers(res[2]), chunk if chunk else b""
        if (res[0] == OK and res[4] == B_WAIT and defers and st.req is pending and core.wait is not None
                and core.defer_request is not None):
            try:
                line = status_line(res[1])
            except BadResponse:
                return res
            # the body waits (a cosocket): the lane hands back the request's token
            d = _Deferred(st, core, core.defer_request(), line, split_headers(res[2]), res[3])
            st.req = d
            core._woken = d.step
            core._arm(core.wait)
            return None
        return res

    def after() -> None:
        st.after_request(pending)

    def count(n: int) -> None:
        plugin.requests += n

    def resume(req, block, status, headers, written, result, exc, start_response):
        st.req = req
        slot = req.core.id
        if exc is not None:
            return call_failed(st, req, slot, exc)
        return answered(st, req, slot, result)

    return LaneApp(call, None, None, None, after, 0, count, resume)
