"""The plugin contract: what a language plugin (Lua = modifier1 6, Python = modifier1 0) gives the core.

A plugin is a subclass of `Plugin`, found by the plugin loader (uwsgid/plugins/loader.py)
as the module-level name `plugin` in the plugin's Python package (`lua_plugin`,
`cffi_plugin`). Lifecycle, in order:

    configure(opts, server)   master (or the single process), before binding/forking.
                              Validate options; load apps now unless opts.lazy_apps.
                              Raise AppLoadError(message) when an app cannot load: with
                              --need-app (default on) the server exits 22 printing message.
    post_fork(worker)         in each worker process after fork (also lazy-apps loading).
    init_core(core)           once per core (an async core or a thread), in the thread that
                              runs it, after post_fork. Per-core state (a lua_State) goes in
                              core.state[self.name].
    request(req)              handle one request; see below.
    after_request(req)        optional (None = none): the request ended, its response is out
                              (or the client is gone), whatever happened. Per-request cleanup
                              that the client need not wait for (the Lua GC step), as uWSGI's
                              after_request hook. Called in the core's thread, once per request.
    shutdown()                worker is exiting (graceful stop or reload).

Request handling (the hot path). `request(req)` either:
  * returns None: the response is complete (everything given to req.write());
  * returns a generator: the core iterates it. Each `yield` (any value) means "flush what
    was written so far; then, if a wait was armed (uwsgi.async_sleep, wait_fd_read,
    wait_fd_write through uwsgid.plugins.api), suspend this core until it fires, else resume me
    at the next loop turn". StopIteration = response complete.
    A wait armed inside request() itself, before it returns the generator, applies to the
    generator's first step: the core flushes what request() wrote, then runs that first
    step once the wait fires. The plugin leaves core.wait alone.
An exception escaping request() or the generator is logged with its traceback by the core;
the client gets a 500 if no header went out yet, else a visibly truncated body
(chunked stream left unterminated / connection closed short of Content-Length).

`req` (uwsgid.net.request.Request) gives the plugin:
    req.vars         dict[bytes, bytes]: CGI vars (REQUEST_METHOD, REQUEST_URI, PATH_INFO,
                     QUERY_STRING, SCRIPT_NAME (always present, default b""), SERVER_NAME,
                     SERVER_PORT, SERVER_PROTOCOL, REMOTE_ADDR, REMOTE_PORT, CONTENT_TYPE,
                     CONTENT_LENGTH, HTTP_*, HTTPS, UWSGI_SCHEME ... as received)
    req.vars_block   on a uwsgi socket, the packet's vars as received (u16le key length, key,
                     u16le value length, value ...), already checked; else None. The same
                     vars as req.vars, except the SCRIPT_NAME default, for a plugin that
                     builds its own form of them more cheaply from the bytes.
    req.modifier1, req.modifier2
    req.input        the request body, fully received before dispatch: read(n=-1),
                     readline(limit=-1), readlines(), iteration. Bounded by CONTENT_LENGTH.
    req.input_terminated  True when the body came chunked (no CONTENT_LENGTH)
    req.start_response(status: bytes, headers: list[tuple[bytes, bytes]])
                     status like b"200 OK". Headers are validated by the plugin; the core
                     adds framing (Content-Length when the whole body is known before the
                     first flush, else chunked for HTTP/1.1, else close-delimited).
    req.write(data: bytes)   body bytes (coalesced; flushed at each yield / slice size).
    req.sendfile(fd: int, offset: int, count: int)  zero-copy file body.
    req.headers_sent  True once the status line went to the client.
    req.core         the core running it (core.id, core.worker, core.state)
    req.logvars      dict for --log-format %(var) values set by the app (set_logvar).

Raw TCP connections (optional; uWSGI's --raw-socket, routed by --raw-modifier1): a plugin whose
has_raw() is true serves each such connection with raw_request(req), as request(): None when
done, else a generator the core steps (yields flush nothing: they are turns, and the armed
waits suspend the core). `req` is a uwsgid.net.raw.RawRequest: `req.sock` is the handler's
socket object (recv, recvline, recv_exactly, send, sendall, close, settimeout, preread, peer,
fileno; wait_readable/wait_writable for a plugin that runs handlers in green threads). The
connection is closed when the request ends; an exception is logged with its traceback
(req.ended_by(exc) says whether it was only the peer leaving or timing out).

The native lane (optional): lane_app(core) returns a LaneApp when the core's loop may call
the plugin's app from C for the common request (uwsgid/server/native_lane.py, core/cpython/lane.c),
or None (the default) when every request must go through request(). The lane never calls
request() or after_request() for the requests it completes; LaneApp.resume takes over, on a
Request the core then runs as any other, a request whose app the lane called but could not
finish itself.

Running a script file (optional): a plugin that lists file extensions in `script_extensions`
(".py", ".lua") runs such a file with run_script(path), in the calling process (a mule, for
--mule FILE), with its runtime's `uwsgi` API available. What the script registered (RPC
functions, signal handlers) stays usable after it returns; its errors propagate.

Other helpers a plugin uses: uwsgid.plugins.api (async_sleep, wait_fd_*, current core, request
id, worker id, log), uwsgid.services (cache, rpc, signals, locks, metrics).
"""

from __future__ import annotations

from collections import namedtuple

from uwsgid.config.options import Option


class AppLoadError(Exception):
    """An app could not be loaded; the message is shown to the user as one line (+ detail)."""


class OptionValueError(Exception):
    """A plugin option has a value the plugin cannot use (an unknown --lua-engine, a negative
    count): a usage error like an unknown option, so one line and exit 1 (not 22, which says
    an app failed to load)."""


# What the native lane needs to call a plugin's app itself (see the module doc).
#
# A WSGI app (base: a dict) is called as call(environ, start_response), the environ a copy of
# base with the request's vars, start_response checked in C and by check(status, headers) ->
# (status bytes, [(name bytes, value bytes)]) for the shapes C leaves to it, raising
# error_class. A block app (base None) is called as call(vars_block: bytes) (an HTTP head is
# encoded as a uwsgi vars block) and returns (status line, headers, body) of bytes when its
# response is whole, anything else (or raises) for resume to go on with.
#
#   call: callable; base: dict | None; check: callable | None; error_class: type | None
#   after: callable | None       after(): once each response the lane completed is out
#   app_id: int                  the app's slot in the scoreboard's per-app counters
#   count: callable              count(n): n more requests served by the lane (the plugin's stats)
#   resume: callable             resume(req, arg, status, headers, written, result, exc,
#       start_response) -> None or a generator, as request(): arg is what call got; status,
#       headers, written: what a WSGI app gave its start_response and write (None for a block
#       app); result: what call returned; exc: what it raised; start_response: the lane's (None
#       for a block app), whose `forward` must be set to an object with start_response and write
#       before the result is iterated. A WSGI result the lane stepped (an iterable other than a
#       list: lane_iter.c) comes back whole (native_lane's _Stepped: its first step's outcome,
#       then the rest)
#   fail: callable | None        fail(exc, environ, closing): an error of a WSGI app's body once
#       the lane sent its response (a step after a declared length came, or close() when
#       closing), for the plugin to log and count as its Python path does; None (the default):
#       Python's unraisable hook
#
# collections.namedtuple, not typing.NamedTuple: typing is the largest module a Lua-only
# instance would import (start-up time, and objects in the master that every worker maps).
LaneApp = namedtuple("LaneApp", ("call", "base", "check", "error_class", "after", "app_id", "count",
                                 "resume", "fail"), defaults=(None,))


class Plugin:
    name: str = ""
    title: str = ""                # a language runtime's name in messages: "Lua (WSAPI)"; none
                                   # for the services' packet handlers (RPC, remote signals)
    modifier1: int = -1            # default modifier1 served (overridable with --plugins N:name)
    options: list[Option] = []

    def configure(self, opts, server) -> None:
        pass

    def has_app(self) -> bool:
        """True when this plugin has an app to serve (else its modifier gets a 503)."""
        return False

    def post_fork(self, worker) -> None:
        pass

    def init_core(self, core) -> None:
        pass

    def request(self, req):
        raise NotImplementedError

    after_request = None   # or a method after_request(req): see the module doc

    def lane_app(self, core) -> LaneApp | None:
        """The native lane's way to this plugin's app on `core` (see the module doc)."""
        return None

    def has_raw(self) -> bool:
        """True when this plugin has a raw TCP handler (--python-raw, --lua-raw)."""
        return False

    def raw_request(self, req):
        raise NotImplementedError

    script_extensions: tuple[str, ...] = ()    # the files run_script runs: see the module doc

    def run_script(self, path: str) -> None:
        raise NotImplementedError

    def shutdown(self) -> None:
        pass

    def stats_apps(self) -> list[dict]:
        """Entries for the stats JSON `apps[]` of a worker (uWSGI fields: id, modifier1,
        mountpoint, startup_time, requests, exceptions, chdir)."""
        return []
