"""The native lane: a thread loop's common request served in C, from accept to close or to
the next request of a kept-alive connection (core/cpython/lane.c), with Python entered only to
run the app (issue 16).

Where it runs: a --socket (uwsgi protocol) or plain --http-socket listener of a thread loop (a
sync worker, each thread of --threads N, or a loop of --async N cores: a request runs on the
last free core, and one the lane hands on keeps that core), in front of a plugin that offers
its app (plugins.contract.LaneApp: the cffi plugin's one WSGI app (not --greenlet) or ASGI app;
the Lua plugin's), with nothing else that must see each request in Python: no --route* the lane
cannot run (uwsgid.routing.lane: a response or error chain, static files beside routes...), no
--add-header/--del-header, no loop engine (--gevent), and a request log that is off
(--disable-logging and none of its exceptions) or uWSGI's default line with nothing added (no
--log-format, --log-x-forwarded-for, --vhost, --memory-report), which the lane writes itself.
With static files (--static-map, --check-static) the lane answers a plain GET of a small file
the worker's file cache holds this second (uwsgid/static/filecache.py) and gives every other
request under a static mountpoint (under --check-static, every request) to the Python path,
which serves and caches it. Under a --thread-slots gate the lane's calls are measured and gated
as the Python path's requests are (uwsgid.server.lane_gate). Elsewhere the loop accepts as
before. UWSGI_NO_LANE=1 in the environment turns it off (a comparison, or a suspected lane bug).

What the lane hands back, and where the Python path takes over (each at the point the lane
stopped, with what it had, so that nothing is done twice; lane.h lists the tuples):

    LANE_START   a connection whose request is not all in, or not of the lane's shape (a body,
                 another modifier1, a ping, an HTTP head the lane does not read, pipelined
                 requests, a bad packet): its Connection is fed what was read
    LANE_RESUME  the app ran but its body is not one the lane sends (a stream, a file wrapper,
                 an iterable whose first step did not bring the whole body), used write(),
                 raised, or asked for its request: a Connection and a Request are made (or were,
                 by take_request), and the core goes on from there; a body the lane stepped
                 comes with that step's outcome (_Stepped)
    LANE_TAIL    the kernel did not take the whole response: the Connection sends the rest
    LANE_GONE    the client went away during the response: its log line
    LANE_KEEP    an HTTP response went out and the connection stays: a Connection waits for its
                 next request, which its reads hand to the lane again (Connection.lane)
    LANE_DEFER   the app answers later (an ASGI task awaiting, a Lua body on a cosocket): the
                 request keeps its core, and its token (core/cpython/lane_defer.c) sends the
                 response from C when the app is done (complete), or gives the request to the
                 Python path (take_deferred)

An iterable body (a framework's: werkzeug's ClosingIterator, Django's response) is sent by the
lane when its first step brings the whole of it: the length it declared, or its end
(core/cpython/lane_iter.c); its remaining steps and close() run after the send, and an error
there is logged through the plugin's LaneApp.fail.

A kept-alive connection's next request that comes while every core of the loop is busy (--async
N with N requests running: an ASGI app's awaits) waits for a free core in _Held, its bytes as
read, and then goes to the lane as if it had just come; the Python parser's queue would else
give it the whole Python path.

The requests the lane completes are counted here after each call (the worker's, the core's and
the app's counters; the scoreboard is written by the lane itself), and --max-requests bounds the
batch so that the worker still stops at exactly its count.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections import deque
from itertools import chain

from uwsgid.net.request import Request, headers_edited
from uwsgid.plugins.api import set_current
from uwsgid.server import lane_gate
from uwsgid.util.log import log, log_request

try:
    from _uwsgi_native import (
        LANE_CLOSE,
        LANE_DEFER,
        LANE_FULL,
        LANE_GONE,
        LANE_HTTP,
        LANE_IDLE,
        LANE_KEEP,
        LANE_RESUME,
        LANE_START,
        LANE_TAIL,
        LANE_UWSGI,
        Lane,
        parse_vars,
    )
except ImportError:     # a tree without the C module (or an older build): the Python path only
    Lane = None

BATCH = 16          # connections per call, as the Python acceptor's ACCEPT_BATCH
_OUT_OF_FDS = (errno.ENFILE, errno.EMFILE)
_HOSTNAME = socket.gethostname()
_monotonic = time.monotonic


def acceptor(tl, listener, conn_class):
    """The accept callable of `listener` on thread loop `tl` through the lane, or None where the
    lane does not run (the module doc)."""
    if Lane is None or os.environ.get("UWSGI_NO_LANE"):
        return None
    w = tl.worker
    core = tl.cores[0]
    if (listener.proto not in ("uwsgi", "http") or getattr(listener, "tls", None) is not None
            or getattr(w, "engine", None) is not None or core.spawn is not None
            or core.to_loop is not None or not (w.reqlog.silent or w.reqlog.plain)
            or headers_edited()):
        return None
    routing = None
    if core.routes is not None:     # the chains on the lane (uwsgid.routing.lane), when they can run there
        plan = core.routes.lane_plan
        if plan is None or core.static is not None:
            return None
        routing = plan.routing(core)
    files = None
    if core.static is not None:
        files = core.static.lane_files()
        if files is None:
            return None     # static answers that depend on more than the path: every request in Python
    http = listener.proto == "http"
    # an HTTP socket's requests go to its --http-socket-modifier1; a uwsgi socket's lane takes
    # the packets of every plugin that offers one (Python's 0, Lua's 6), the others go the Python way
    if http:
        wanted = [listener.modifier1] if not listener.modifier2 else []
    else:
        wanted = sorted(m for m in w.plugins if 0 <= m < 256)
    apps = {}
    for m in wanted:
        plugin = w.plugins.get(m)
        lane_app = getattr(plugin, "lane_app", None)
        found = lane_app(core) if lane_app is not None else None
        if found is not None and len(apps) < 2:
            apps[m] = (plugin, found)
    if not apps and files is None:
        return None
    limits = tl.limits
    sb = w.scoreboard
    c_sb = sb is not None and sb.c_offsets(w.id, core.id, -1, -1) is not None
    cores = tl.cores
    lane = Lane(LANE_HTTP if http else LANE_UWSGI, limits.buffer_size, limits.max_vars, bool(limits.keepalive),
                tl.watch_lock, _HOSTNAME.encode(), str(listener.port or 80).encode(),
                sb.c_offsets(w.id, core.id, -1, -1)[0] if c_sb else 0,
                log=None if w.reqlog.silent else log_request, log_pid=os.getpid(), log_micros=w.reqlog.micros,
                ncores=len(cores))
    for i, c in enumerate(cores):
        if c_sb:
            _, start, core_off, _ = sb.c_offsets(w.id, c.id, -1, -1)
            lane.set_core(i, c.id, start, core_off, sb.c_static_offset(w.id, c.id), c)
        else:
            lane.set_core(i, c.id, 0, 0, 0, c)
    for m, (_, found) in apps.items():
        base = None
        if found.base is not None:
            base = dict(found.base)
            if http:    # the constant vars of uwsgid.net.protocols.http's HttpParser.base
                base.update(SCRIPT_NAME="", SERVER_NAME=_HOSTNAME, SERVER_PORT=str(listener.port or 80))
        sb_apps = tuple(sb.c_offsets(w.id, c.id, m, found.app_id)[3] for c in cores) if c_sb else None
        lane.add_app(m, found.call, base, found.check, found.error_class, found.after, sb_apps, found.app_id,
                     found.fail)
    if files is not None:
        lane.set_static(files[0], files[1])
    if routing is not None:
        lane.set_routes(routing.pre, routing.post)
    return _Driver(tl, listener, conn_class, lane, apps, routing).accept


class _Driver:
    """The Python side of one listener's lane on one loop."""

    def __init__(self, tl, listener, conn_class, lane, apps, routing=None):
        self.tl = tl
        self.routing = routing      # the lane's routes (uwsgid.routing.lane.Routing), or None
        # core.defer_request while this lane runs an app; none beside routes: a deferred answer
        # would miss their headers and final chain
        self.defer_request = self._defer if routing is None else None
        self.listener = listener
        self.conn_class = conn_class
        self.lane = lane
        self.apps = apps            # modifier1 -> (plugin, LaneApp), in the lane's order
        self.counters = [found.count for _, found in apps.values()]
        self.index = {core: i for i, core in enumerate(tl.cores)}
        self.current = tl.cores[0]  # the core of the lane's call in progress (or last)
        self.worker = tl.worker
        self.held = tl.cores[0].lane_replay or _Held(tl)    # one per loop, whatever the listener
        tl.lane = lane              # keepalive_watch sees the app running (lane.busy_since)
        # the C calls that run apps; with --thread-slots, measured and gated for the gate
        self.serve, self.handle_one = lane_gate.wrap(tl, lane) if tl.gate is not None else (lane.serve, lane.handle)

    def _core(self):
        """The core the lane's next request runs on, made the current one (the uwsgi API and
        take_request find it there): the one free.pop() gives the Python path if it takes over."""
        core = self.current = self.tl.free[-1]
        core.take_request = self._take      # this listener's lane (a loop may have several)
        core.defer_request = self.defer_request
        set_current(core)
        return core

    # ---- new connections ---------------------------------------------------------------------
    def accept(self) -> None:
        w = self.worker
        if w.paused:
            return
        if not self.tl.free:
            self.tl.stop_accepting()    # core_done starts it again (else a ready listener spins the loop)
            return
        batch = BATCH
        if w.max_requests:
            batch = max(1, min(batch, w.max_requests - w.requests))
        lane = self.lane
        lane.requests = w.requests
        core = self._core()
        r = self.serve(self.listener.fd, batch, self.index[core])
        if r[0]:
            self._count(r[0], core)
        kind = r[1]
        if kind == LANE_IDLE or kind == LANE_FULL:
            return
        if kind == LANE_START:
            self.tl._start_ends_batch(self._connection(r[2], r[3]), r[4])
        elif kind == LANE_KEEP:
            conn = self._connection(r[2], r[3])
            conn.served = 1
            conn.loop.add_reader(conn.fd, conn.on_readable)
            self._kept()
        elif kind == LANE_DEFER:
            self._deferred(None, r[2])
            self._kept()
        elif kind == LANE_RESUME:
            self._resume(None, *r[2:])
            self._kept()
        elif kind == LANE_TAIL:
            self._tail(self._connection(r[2], r[3]), r[4], r[5])
            self._kept()
        elif kind == LANE_GONE:
            self._gone(r[2], r[3])
        elif -kind in _OUT_OF_FDS:
            self.tl._out_of_fds(self.listener, os.strerror(-kind))

    def _kept(self) -> None:
        """A connection accepted by the lane stays open: the loop requeues, and may leave the
        next ones to a worker with cores to spare (uwsgid.server.conn_spread)."""
        tl = self.tl
        tl.kept_open()
        if tl.spread is not None:
            tl.spread.accepted()

    def _connection(self, fd: int, addr):
        # an HTTP connection's next requests come to the lane too, and so does the packet of a
        # uwsgi connection accepted before it came (a unix socket: no TCP_DEFER_ACCEPT there)
        conn = self.conn_class(self.tl, fd, addr, self.listener)
        conn.lane = self.handle
        return conn

    # ---- a kept-alive connection's next request -------------------------------------------------
    def handle(self, conn, data: bytes) -> bool:
        """Connection._received: True when the lane took (and answered or handed on) the request
        in `data`; False: the Connection's parser reads it as before."""
        tl = self.tl
        addr = conn.addr
        w = self.worker
        if w.paused or w.stopping:
            return False
        if not tl.free:
            self.held.hold(conn, data)
            return True
        conn.busy = True    # keepalive_watch must not take it for idle while the app runs
        lane = self.lane
        lane.requests = w.requests
        core = self._core()
        try:
            r = self.handle_one(conn.fd, data, addr, self.index[core])
        finally:
            conn.busy = False
        if r[0]:
            self._count(r[0], core)
            conn.served += 1
        kind = r[1]
        if kind == LANE_START:
            return False
        if kind == LANE_KEEP:
            conn.deadline = _monotonic() + conn.timeout
        elif kind == LANE_CLOSE:
            conn.closing = True
            conn.close()
        elif kind == LANE_DEFER:
            self._deferred(conn, r[2])
        elif kind == LANE_RESUME:
            self._resume(conn, *r[2:])
        elif kind == LANE_TAIL:
            self._tail(conn, r[4], r[5])
        elif kind == LANE_GONE:
            self._gone(r[2], r[3])
            conn.close()
        return True

    # ---- the Python path takes over ---------------------------------------------------------------
    def _count(self, n: int, core) -> None:
        w = self.worker
        w.requests += n
        core.requests += n
        for count, k in zip(self.counters, self.lane.counts()):     # the static files' last: no app's
            if k:
                count(k)
        if w.recycles:
            w.after_request()

    def _request(self, conn, fd: int, addr, modifier1: int, arg, raw, keepalive: bool | None,
                 listen: bool = True, core=None):
        """A Request for the lane's request on conn (made when None): arg, its environ or its
        vars block; raw, a uwsgi packet's vars block. The core runs it from now on. listen:
        a new conn waits for its next bytes now (else: the caller, after the response). core:
        a deferred request's, already taken."""
        tl = self.tl
        if core is None:
            core = self.current     # the lane's request's core (_core: the last free one) is taken
            _take_core(tl.free, core)
        if conn is None:
            conn = self._connection(fd, addr)
            if listen:
                conn.loop.add_reader(fd, conn.on_readable)      # as Connection.start: its next bytes
        block = raw if raw is not None else arg if type(arg) is bytes else None
        if block is not None:
            v = parse_vars(block, 1024)     # the lane read it: well formed, at most LANE_VARS_MAX (256)
            if raw is not None and b"SCRIPT_NAME" not in v:
                v[b"SCRIPT_NAME"] = b""     # as protocols.uwsgi: nginx's stock uwsgi_params sends none
        else:
            v = {k.encode("latin-1"): val.encode("latin-1") for k, val in arg.items()
                 if type(val) is str and k[:1].isupper()}
            block = None
        http11 = v.get(b"SERVER_PROTOCOL", b"HTTP/1.1") != b"HTTP/1.0"
        if keepalive is None:   # asked for by the app (take): llhttp's rule on its plain head
            keepalive = conn.is_http and bool(tl.limits.keepalive) and _keepalive(v, http11)
        req = Request(conn, v, modifier1, 0, v.get(b"REQUEST_METHOD", b"GET"), http11, bool(keepalive))
        req.vars_block = block
        if self.routing is not None:
            req.route = self.routing.state_for(req)     # the routes' headers, the final chain
        if raw is not None:
            req.pktsize = len(raw)
        core.adopt(conn, req)
        core.after = getattr(self.apps[modifier1][0], "after_request", None)
        return req

    def _take(self):
        taken = self.lane.take()
        if taken is None:
            return None
        fd, addr, modifier1, arg, raw = taken
        conn = self.tl.conns.get(fd)    # a kept-alive connection's (handle), else a new one
        return self._request(conn, fd, addr, modifier1, arg, raw, None)

    # ---- a request the app answers later (LANE_DEFER, core/cpython/lane_defer.c) ------------------
    def _defer(self):
        """core.defer_request, inside the lane's call of a block app: the request is answered
        later through the token this returns (complete / take_deferred)."""
        return self.lane.defer(self)

    def _deferred(self, conn, token) -> None:
        """The lane handed the request back deferred: it keeps its core (counted as Core._begin
        counts) until the token is answered; a kept-alive connection stays busy meanwhile (what
        the client sends is queued by its parser)."""
        tl = self.tl
        core = tl.cores[token.core]
        _take_core(tl.free, core)
        w = self.worker
        w.requests += 1
        core.requests += 1
        if conn is not None:
            conn.busy = True
            token.conn = conn   # its closing voids the fd (complete() checks)
        if not tl.free:
            tl.stop_accepting()     # as _resume

    def complete(self, token, status: bytes, headers, body: bytes) -> bool:
        """The app's whole response to a deferred request, sent from C (the same framing, log
        line and counters as an answer at once). False: a shape the lane leaves to the Python
        path (the caller takes the request: take_deferred)."""
        r = token.complete(status, headers, body)
        if r is False:
            return False
        core = self.tl.cores[token.core]
        conn = token.conn
        if conn is not None:
            conn.busy = False
            conn.served += 1
        if r is not None:
            kind = r[1]
            if kind == LANE_KEEP:
                if conn is None:
                    conn = self._connection(r[2], r[3])
                    conn.served = 1
                    conn.loop.add_reader(conn.fd, conn.on_readable)
                elif conn.queue or conn.eof or conn.paused:
                    conn.pump()     # what came meanwhile, or the client's end
                else:
                    conn.deadline = _monotonic() + conn.timeout
            elif kind == LANE_CLOSE:
                conn.closing = True
                conn.close()
            elif kind == LANE_TAIL:
                self._tail(conn if conn is not None else self._connection(r[2], r[3]), r[4], r[5])
            elif kind == LANE_GONE:
                self._gone(r[2], r[3], core)
                if conn is not None:
                    conn.close()
        self._release(core)
        return True

    def take_deferred(self, token):
        """The Python path answers a deferred request from now on (a streamed body, a wait for
        the client to go, an error): its Request, adopted by its core, as for LANE_RESUME."""
        fd, addr, modifier1, arg, raw, keepalive = token.take()
        conn = token.conn
        if conn is not None:
            conn.busy = False   # core.adopt sets it again
        return self._request(conn, fd, addr, modifier1, arg, raw, keepalive, core=self.tl.cores[token.core])

    def _release(self, core) -> None:
        """A deferred request answered: its app's counters, then its core is free (Core._done's
        end)."""
        for count, k in zip(self.counters, self.lane.counts()):
            if k:
                count(k)
        self.tl.core_done(core)
        replay = core.lane_replay
        if replay is not None:
            replay()
        w = self.worker
        if w.recycles:
            w.after_request()

    def _resume(self, conn, fd, addr, modifier1, arg, raw, status, headers, written, result, exc,
                keepalive, start_response, stepped) -> None:
        if stepped is not None:
            result = _Stepped(result, *stepped)
        core = self.current
        req = core.request
        if req is None:     # else the app asked for it (take_request): made then
            req = self._request(conn, fd, addr, modifier1, arg, raw, keepalive, listen=False)
        try:
            res = self.apps[modifier1][1].resume(req, arg, status, headers, written, result, exc, start_response)
        except Exception:
            core._fail()
            res = None
        else:
            core.respond(res)
        c = req.conn
        if not (c.closed or c.eof or c.paused or c.lingering) and not c.loop.has_reader(c.fd):
            # as Connection.start: a connection still open after its response was started waits
            # for its next bytes; a one-shot one (answered and closed by now) costs no epoll_ctl
            c.loop.add_reader(c.fd, c.on_readable)
        tl = self.tl
        if not tl.free:
            tl.stop_accepting()     # as _hold: the rest of the queue goes to idle workers

    def _tail(self, conn, rest: bytes, keep: bool) -> None:
        conn.send(rest)
        if keep:
            if not conn.closed and not conn.loop.has_reader(conn.fd):
                conn.loop.add_reader(conn.fd, conn.on_readable)
            return
        conn.closing = True
        if conn.out:
            conn.on_drain = conn.close
        else:
            conn.close()

    def _gone(self, err: int, uri: bytes, core=None) -> None:
        w = self.worker
        if not getattr(w, "ignore_write_errors", False):
            log(f"client {self.listener.name} went away during the response to {uri.decode('latin-1')} "
                f"({os.strerror(err)})")
        sb = w.scoreboard
        if sb is not None:
            sb.add_error(w.id, (core or self.current).id, "write")


class _Stepped:
    """A WSGI body the lane stepped once (core/cpython/lane_iter.c) and hands on: that step's
    outcome (LANE_STEP_ITEM: its item comes first; LANE_STEP_RAISED: its error is raised), then
    the rest of the iterator, stepped in C (itertools.chain: a long stream pays nothing per chunk
    here). close() is the body's own, so the Python path closes it once, as it would."""

    __slots__ = ("result", "rest")

    def __init__(self, result, state: int, it, first, exc):
        self.result = result
        if state == _STEP_ITEM:
            self.rest = chain((first,), it)
        elif state == _STEP_RAISED:
            self.rest = _raising(exc)
        else:
            self.rest = iter(())    # the body ended at its first step

    def __iter__(self):
        return self.rest

    def close(self) -> None:
        close = getattr(self.result, "close", None)
        if close is not None:
            close()


def _raising(exc):
    raise exc
    yield   # a generator: the error comes at its first step, as from the app's


_STEP_ITEM, _STEP_END, _STEP_RAISED = 1, 2, 3      # lane.h's LANE_STEP_*


class _Held:
    """A loop's kept-alive requests that came while every core was busy (--async N, N busy),
    kept for the lane until a core frees, instead of the Python parser's queue
    (ThreadLoop.waiting): under a full loop every request would else take the whole Python
    path. Called by Core._done (each core's lane_replay)."""

    def __init__(self, tl):
        self.tl = tl
        self.queue = deque()        # (conn, data)
        self.queued = False         # a replay is on the loop's ready list
        for core in tl.cores:
            core.lane_replay = self

    def hold(self, conn, data: bytes) -> None:
        """conn reads nothing more meanwhile, so that what follows stays behind this request;
        busy: keepalive_watch, the reaper and a graceful stop's drain leave it alone."""
        conn.busy = True
        conn.loop.remove_reader(conn.fd)
        self.queue.append((conn, data))

    def __call__(self) -> None:
        """A core freed: the held requests go on at the loop's next turn, while cores are free."""
        if self.queue and not self.queued:
            self.queued = True
            self.tl.loop.ready.append(self._replay)

    def _replay(self) -> None:
        self.queued = False
        queue = self.queue
        free = self.tl.free
        while queue and free:
            conn, data = queue.popleft()
            conn.busy = False
            if conn.closed:
                continue
            conn.loop.add_reader(conn.fd, conn.on_readable)
            conn._received(data)    # the lane again (a core is free), or the Python parser


def _take_core(free: list, core) -> None:
    """core leaves the loop's free list: the last one mostly (_core took it), but a deferred
    request answered during the app's call (asyncio's ready callbacks) may have put another
    after it."""
    if free and free[-1] is core:
        free.pop()
    else:
        free.remove(core)


def _keepalive(v: dict, http11: bool) -> bool:
    """llhttp's should_keep_alive for a head the lane read (its Connection header is plain)."""
    conn = v.get(b"HTTP_CONNECTION", b"").lower()
    return conn != b"close" if http11 else conn == b"keep-alive"
