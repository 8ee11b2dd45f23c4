"""The Lua app on the native lane (uwsgid/server/native_lane.py, core/cpython/lane.c): the lane
reads the request and hands its uwsgi vars block (an HTTP head encoded as one) to `call`, which
runs the app on the core's lua_State as response.handle does; a response that is whole after
the app's first slice (a string body, or a body function done in one go) goes back to the lane
as (status line, headers, body), which sends it; anything else (a streamed body, an error, a
WebSocket) goes on in response.answered on a Request the lane's driver makes. The state's
per-request end (io.write's partial line, the GC step of --lua-gc-freq) runs once the lane's
response is out, as after_request does on the Python path.
"""

from __future__ import annotations

from uwsgid.plugins.api import current_core
from uwsgid.plugins.contract import LaneApp

from .response import B_END, OK, BadResponse, answered, call_failed, split_headers, status_line


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


def lane_app(plugin, core) -> LaneApp | None:
    """The loop's cores share its lua_State (state.py); a request runs in the slot of the core
    the lane names as the current one (uwsgid/server/native_lane.py)."""
    st = core.state.get("lua")
    if st is None or not plugin.has_app():
        return None
    app_path = plugin.app_path
    pending = _PendingRequest(st)
    run = st.call

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
