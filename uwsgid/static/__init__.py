"""Static files: uWSGI's --static-map, --check-static and their siblings, answered by the core
before the app, whatever the modifier1 and the protocol.

One concern per module:
    mapping      which file a request names: the roots in order, --static-index,
                 --static-skip-ext, and the traversal checks (--static-safe)
    mime         the MIME table (--mime-file, /etc/mime.types)
    conditional  the HTTP semantics of a file response: dates, If-Modified-Since, Range, If-Range
    rules        Expires (--static-expires*) and the .gz/.br variants (--static-gzip*)
    sender       a file body through non-blocking sendfile(2) on an event loop
    offload      the threads of --offload-threads, sending bodies while the core serves others
    pathcache    --static-cache-paths: resolved paths kept in a uWSGI cache (handed in by services)
    filecache    small files' bytes and heads kept in each worker's memory, checked each second
    serve        the glue: Static.serve(core, req), --file-serve-mode, --offload-threads
Each declares the options it reads; importing this package declares them all (uwsgid.main does,
before parsing) and costs little: regular expressions, threads and event loops are imported
when an option needs them.

How the server reaches it, through util.hooks (this package imports nothing above net):
    master_start   `handler` is built when a static option is given (the MIME table is read and
                   the mappings logged once, before the fork); a bad value stops the start
    worker_start   each worker resolves the roots' real paths (after --chdir2) and starts its
                   offload threads
    the core       Core.__init__ keeps `handler` (None without static options: the hot path pays
                   one attribute test) and calls handler.serve(core, req) before the plugin
"""

from __future__ import annotations

from uwsgid.static import mapping, mime, pathcache, rules, serve  # noqa: F401  (their options)
from uwsgid.util import hooks
from uwsgid.util.log import log

handler = None      # this process's serve.Static, or None when no static option is given

# the options that make the server serve files (the others only tune how)
_ACTIVE = ("check-static", "check-static-docroot", "static-map", "static-map2")


def setup(opts):
    """The handler for these options (logging uWSGI's start-up lines), or None."""
    if not any(opts.get(name, None) for name in _ACTIVE):
        n = int(opts.get("offload-threads", 0) or 0)
        if n:
            log(f"*** WARNING: --offload-threads {n}: only static files are offloaded here, and no "
                f"--static-map / --check-static is given: the threads are not started ***")
        secs = opts.get("static-cache-paths", 0)
        if secs:
            log(f"*** WARNING: --static-cache-paths {secs}: no --static-map / --check-static is given: "
                f"no path is cached ***")
        return None
    static = serve.Static(opts)
    for line in static.describe():
        log(line)
    static.mapper.resolve(announce=True)
    return static


def _master_start(server) -> None:
    global handler
    try:
        handler = setup(server.opts)
    except mapping.StaticConfigError as e:
        log(f"uwsgi: {e}")      # one line, exit 1, no traceback (as the services' own errors)
        raise SystemExit(1) from None


def _worker_start(worker) -> None:
    if handler is not None:
        handler.worker_start(worker)


hooks.register("master_start", _master_start)
hooks.register("worker_start", _worker_start)
