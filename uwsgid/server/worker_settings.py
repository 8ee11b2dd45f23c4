"""What every worker derives from the options alone, computed once (issue 20).

    WorkerSettings(opts)        the master's, made by uwsgid.server.prefork before it forks
                                (server.worker_settings); a Worker without one makes its own

A forked worker that builds these itself runs the code that parses them (option lookups,
Limits.from_opts, the RequestLogger's format set-up), and each function it runs writes pages it
shared with the master: reference counts, the 3.11 interpreter's inline caches, new objects. Those
pages become the worker's private memory. Reading the master's finished objects costs a few.

Only what cannot differ between workers belongs here: the same options give the same values in
every worker (the per-worker state, its id, its counters, stays in Worker). A worker that changes
one of these objects (the ASGI plugin sets limits.stream_body) changes its own copy of the page.
"""

from __future__ import annotations

import resource  # here, not where it is used: a worker may run after --uid dropped read access

from uwsgid.config.options import value as option_value
from uwsgid.net.protocols import Limits, keepalive_seconds
from uwsgid.observe.reqlog import RequestLogger


def _default_max_pending() -> int:
    """Half the open-files limit: the other half stays for the requests being served."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, (soft if soft != resource.RLIM_INFINITY else 65536) // 2)


class WorkerSettings:
    """The options a worker and its thread loops read, converted once."""

    def __init__(self, opts):
        def get(name, default):
            return option_value(opts, name, default)
        self.limits = Limits.from_opts(opts)
        self.reqlog = RequestLogger(opts, None)     # each worker takes a copy: for_worker()
        self.threads = max(1, int(get("threads", 1) or 1))
        self.async_cores = max(1, int(get("async", 1) or 1))
        self.gevent = int(get("gevent", 0) or 0) > 0
        self.lazy = bool(get("lazy_apps", False) or get("lazy", False))
        self.max_requests = int(get("max_requests", 0) or 0)
        self.reload_on_rss = int(get("reload_on_rss", 0) or 0) * 1024 * 1024
        self.reload_on_as = int(get("reload_on_as", 0) or 0) * 1024 * 1024
        self.reaper = bool(get("reaper", False))
        self.ignore_write_errors = bool(get("ignore_write_errors", False))
        self.min_worker_lifetime = int(get("min_worker_lifetime", 10) or 0)
        self.max_pending = int(get("max_pending_heads", 0) or 0) or _default_max_pending()
        self.head_timeout = float(get("http_header_timeout", 5) or 5)
        self.http_keepalive = keepalive_seconds(get("http_keepalive", "1")) > 0
