"""The chains at run time: where the core and the response framing call them.

    Router.request(core, req)      the core, before static files and the plugin: the request
                                   chain; True when it answered (or dropped) the request
    State.before_head(req, final)  net.request, when the head is about to go out: the error
                                   chain (status >= 400) then the response chain, then the
                                   headers the routes added or removed; None holds the body
                                   (fixcl, forcecl, cachestore need it whole)
    Router.done(req)               the core, after the response is out (the client is not
                                   kept waiting): the final chain; False when `donotlog` ran

A request gets a State only when some chain exists (the core tests one attribute otherwise).
"""

from __future__ import annotations

from uwsgid.net.raw import RawRequest
from uwsgid.routing.chains import BREAK, SUSPEND
from uwsgid.util.log import log


class State:
    """One request's routing: headers to add/remove, the flags the actions set."""

    __slots__ = ("router", "chain", "jump", "add", "remove", "clear", "noheaders", "donotlog",
                 "hold", "forcecl", "stores", "headed", "answered", "pending", "resume_pc", "resumed")

    def __init__(self, router):
        self.router = router
        self.chain = "request"
        self.jump = -1
        self.add = None          # [(name, value)] appended to the response (addheader)
        self.remove = None       # {lower-case name} removed from the app's headers (delheader)
        self.clear = None        # clearheaders: the new status line, the app's headers dropped
        self.noheaders = False   # disableheaders / send without a status: the body goes out raw
        self.donotlog = False
        self.hold = False        # fixcl / forcecl / cachestore: the body is sent whole, at the end
        self.forcecl = False
        self.stores = None       # cachestore: [(put(body), status)] run on the whole body
        self.headed = False
        self.answered = False    # an action wrote its own response
        self.pending = None      # a code hook waiting on I/O (uwsgid.routing.actions_code)
        self.resume_pc = 0       # ... at this route
        self.resumed = None      # set when the request chain ended after a wait (actions_code)

    # ---- what actions use --------------------------------------------------------------------
    def answer(self, req, status: bytes, headers: list, body: bytes = b"") -> None:
        """Replace the response (before its head went out) with the route's."""
        req.start_response(status, headers)
        if body:
            req.write(body)
        self.answered = True

    def add_header(self, line: bytes) -> None:
        name, colon, value = line.partition(b":")
        name = name.strip()
        if not colon or not name or b"\r" in line or b"\n" in line:
            log(f"[uwsgi-route] invalid header {line[:200]!r}: expected 'Name: value'")
            return
        if self.add is None:
            self.add = []
        self.add.append((name, value.strip()))

    def remove_header(self, name: bytes) -> None:
        if self.remove is None:
            self.remove = set()
        self.remove.add(name.strip().lower())

    # ---- the head is about to go out ---------------------------------------------------------
    def plain_headers(self, status: bytes, headers: list):
        """For net.request's C response path (the whole response at once): the headers as the
        request chain leaves them (addheader, delheader) when nothing else of the routing
        applies to this response, else None (the Python path then runs before_head)."""
        rt = self.router
        if (rt.response is not None or rt.collect is not None or self.headed or self.clear is not None
                or self.noheaders or self.hold):
            return None
        if rt.error is not None:
            try:
                if int(status[:3]) >= 400:
                    return None
            except ValueError:
                return None
        rm = self.remove
        if rm:
            headers = [h for h in headers if h[0].lower() not in rm]
        add = self.add
        if add:
            if any(len(h[0]) == 14 for h in add):
                return None         # maybe a Content-Length: the Python path sorts out the framing
            headers = [*headers, *add]
        return headers

    def before_head(self, req, final: bool):
        if not self.headed:
            self.headed = True
            rt = self.router
            if rt.collect is not None:
                rt.collect.apply(req)      # --collect-header / --pull-header, before the chains
            code = 0
            answered = self.answered = False
            if req.status >= 400 and rt.error:
                self.chain = "error"
                code = rt.error.run(self, req)
                answered = self.answered
            if code != BREAK and rt.response:
                self.chain = "response"
                code = rt.response.run(self, req)
                answered = answered or self.answered
            self.chain = "final"
            if code == BREAK and not answered:
                # uWSGI: the response is dropped (nothing more is written); the client sees a close
                req.conn.close()
                return None
            self._edit(req)
            if answered:
                self.hold = False
                final = True
            if self.noheaders:
                req.headers_sent = True
                req._framing = 3       # net.request.F_CLOSE: the bytes go out as they are
                req.keepalive = False
                return final
        if self.hold:
            if not final:
                return None
            self._whole(req)
        return final

    def _edit(self, req) -> None:
        clear = self.clear
        if clear is not None:
            buf, n = req._buf, req._buflen      # the app's body stays: only its head is replaced
            req.start_response(clear, [])
            req._buf, req._buflen = buf, n
        if self.remove is None and self.add is None:
            return
        headers = req.headers
        rm = self.remove
        add = self.add
        if not rm and add and not any(len(h[0]) == 14 for h in add):
            # only headers added, none a Content-Length: the app's length (_app_cl) stands
            req.headers = [*headers, *add]  # a plain list: HeaderBlock's cached blocks no longer apply
            return
        if rm:
            headers = [h for h in headers if h[0].lower() not in rm]
        if add:
            headers = [*headers, *add]
        req.headers = list(headers)
        cl = None
        for name, value in req.headers:
            if len(name) == 14 and name.lower() == b"content-length":
                cl = int(value) if value.strip().isdigit() else None
        req._app_cl = cl

    def _whole(self, req) -> None:
        body = b"".join(req._buf)
        if self.forcecl:
            req.headers = [h for h in req.headers if h[0].lower() != b"content-length"]
            req._app_cl = None          # the framing sets the real length
        elif req._app_cl is None:
            pass                        # fixcl: the framing adds Content-Length for a whole body
        if self.stores:
            for put, status in self.stores:
                if req.status == 200 or (status and req.status == status):
                    try:
                        put(body)
                    except Exception as e:
                        log(f"[uwsgi-route] cachestore: {e}")


class Router:
    """The compiled chains (uwsgid.routing.chains), shared by every core of the process."""

    __slots__ = ("request_chain", "error", "response", "final", "collect", "lane_plan")

    def __init__(self, chains: dict, collect=None):
        self.request_chain = chains["request"] or None
        self.error = chains["error"] or None
        self.response = chains["response"] or None
        self.final = chains["final"] or None
        self.collect = collect      # uwsgid.routing.collect.Collector, or None
        # the chains on the native lane (uwsgid.routing.lane.Plan, set by setup), None: every
        # request takes the Python path
        self.lane_plan = None

    def request(self, core, req) -> bool:
        if req.__class__ is RawRequest:
            return False        # a --raw-socket connection is not HTTP: no route applies
        st = req.route
        if st is not None and st.resumed is not None:
            return resumed(core, req, st)   # the chain ran already, a hook waited in it
        st = State(self)
        req.route = st
        chain = self.request_chain
        if chain is None:
            st.chain = "response"
            return False
        code = chain.run(st, req)
        if code == SUSPEND:
            return suspend(core, req, st)   # a code hook waits: the core steps it (actions_code)
        if code != BREAK:
            st.chain = "response"
            # the routes may have changed the vars: a plugin must not read the packet as received
            req.vars_block = None
            return False
        st.chain = "response"
        if req.status:
            core.finish()
        else:
            # break without a response: uWSGI ends the request with nothing written
            req.keepalive = False
            core.conn.close()
            core._done()
        return True

    def done(self, req) -> bool:
        st = req.route
        if self.final is not None:
            st.chain = "final"
            try:
                self.final.run(st, req)
            except Exception as e:
                log(f"[uwsgi-route] error in the final chain: {e!r}")
        return not st.donotlog


def suspend(core, req, st) -> bool:
    from uwsgid.routing.actions_code import suspend as run_suspended
    return run_suspended(core, req, st)


def resumed(core, req, st) -> bool:
    from uwsgid.routing.actions_code import resumed as go_on
    return go_on(core, req, st)
