"""The one ASGI app of a worker on the native lane (uwsgid/server/native_lane.py,
core/cpython/lane.c), as a block app (uwsgid.plugins.contract.LaneApp).

The lane reads a plain request (no body, no upgrade, no pipelining: lane_env_http.c says which) and
hands `call` its vars block; `call` builds the scope, starts the app's task and runs its first
steps (asgi_http.start). A response complete by then goes back to the lane as (status line,
headers, body), which the lane serialises, sends, logs and counts without a Request or a
Connection in Python. An app still awaiting (asyncio.sleep, a database) defers its request
(core.defer_request, core/cpython/lane_defer.c): the core stays its own, and its whole response
is sent from C when the app sends it (HttpCycle.send: token.owner.complete), again without a
Request. Otherwise (the app streams its body, waits for the client to go, or fails; a deferred
request the same, later: HttpCycle._take_deferred) the lane hands the request to the Python
path, and `resume` attaches the Request it made to the running cycle, whose steps the core goes
on with as for a request read in Python. A response that starts streaming within the first steps
takes its Request at once (core.take_request, HttpCycle._take). UWSGI_LANE_NO_DEFER=1 in the
environment turns deferring off (a comparison, or a suspected bug).
"""

from __future__ import annotations

import os

# core/cpython/asgi_scope.c and vars.c: built with the lane, the only caller here
from _uwsgi_native import asgi_scope, parse_vars

from uwsgid.plugins.api import current_core
from uwsgid.plugins.contract import LaneApp

from .asgi_http import ASGI, HttpCycle, scope_from_vars, start

_PYTHON_PATH = object()     # call's answer for a request it leaves to asgi.AsgiApp.request
MAX_VARS = 1024     # the lane passes at most its --max-vars (as native_lane's _request)


def _python_scope(block: bytes, state: dict):
    """The scope as scope_from_vars builds it, or None for a request the Python path must take
    whole: a WebSocket, a body (a uwsgi packet's)."""
    v = parse_vars(block, MAX_VARS)
    if (type(v) is not dict or b"HTTP_UPGRADE" in v or b"HTTP_TRANSFER_ENCODING" in v
            or v.get(b"CONTENT_LENGTH", b"0") not in (b"0", b"")):
        return None
    return scope_from_vars(v, v.get(b"REQUEST_METHOD", b"GET"),
                           v.get(b"SCRIPT_NAME", b"").decode("latin-1").rstrip("/"),
                           v.get(b"PATH_INFO", b"").decode("latin-1"), state)


def lane_app(asgi_app, core, drivers: dict) -> LaneApp | None:
    """The lane's way to asgi_app (an asgi.AsgiApp, the worker's one app) on core's loop;
    drivers: the worker's asyncio drivers by loop (made by init_core, before the first request)."""
    record = asgi_app.record
    state = asgi_app.state
    loop = core.loop
    defers = not os.environ.get("UWSGI_LANE_NO_DEFER")

    def call(block: bytes):
        driver = drivers[loop]
        scope = asgi_scope(block, state, ASGI)
        if scope is None:       # a shape C leaves to Python
            scope = _python_scope(block, state)
            if scope is None:
                return _PYTHON_PATH
        cycle = HttpCycle(None, driver, record, current_core())
        cycle.lane_scope = scope
        cycle.run = run = start(cycle, driver, record.callable(scope, cycle.receive, cycle.send))
        result = cycle.lane_result
        if result is not None:
            return result
        # not when it waits for the client to go already (receive(): the Python path watches)
        if run is not None and defers and cycle.req is None and cycle.gone_fut is None and not cycle.task.done():
            defer = cycle.core.defer_request
            if defer is not None:   # the app awaits: the lane hands back the request's token
                cycle.token = defer()
        return cycle

    def count(n: int) -> None:
        record.requests += n

    def resume(req, block, status, headers, written, result, exc, start_response):
        record.requests += 1
        req.app_id = record.id      # the request log's "app: N"
        if exc is not None:
            raise exc               # before the app ran (its own errors are in its task): a 500
        if result is _PYTHON_PATH:
            v = req.vars
            return asgi_app.request(req, v.get(b"SCRIPT_NAME", b"").decode("latin-1").rstrip("/"),
                                    v.get(b"PATH_INFO", b"").decode("latin-1"))
        if type(result) is tuple:   # complete, in a shape the lane leaves to the Python path
            status, headers, body = result
            try:
                req.start_response(status, [(bytes(n), bytes(v)) for n, v in headers])
            except ValueError as e:
                raise RuntimeError(f"ASGI http.response.start: {e}") from None
            if body:
                req.write(body)
            return None
        result.attach(req)
        return result.run

    return LaneApp(call, None, None, None, None, record.id, count, resume)
