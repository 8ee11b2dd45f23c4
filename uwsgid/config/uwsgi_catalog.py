"""Every option real uWSGI has, so that one this server does not implement is never silently
ignored: the parser asks `reason(name)` about a key that no declared option takes. A uWSGI
option gets one line saying what is lost and what to use instead (an error with --strict, a
loud warning otherwise; always an error for the few without which nothing can run, such as
an XML config or a paste.deploy app); a name uWSGI does not know either stays an "unknown
option".

The table is uwsgi_catalog_table.py, generated from uWSGI's source by
scripts/gen_uwsgi_catalog.py (core and plugin option tables: name, the argument it takes, the
owning plugin, uWSGI's help), loaded only when a key no declared option takes turns up. The
reasons here are written by hand for the options real configs use.

An option that truly does nothing here because its effect is always on is declared below as an
option whose help says "accepted for compatibility" and why (tests/config/test_options_audit.py
lists them): it is accepted quietly and documented in docs/OPTIONS.md.
"""

from __future__ import annotations

from uwsgid.config.options import Option, declare

declare(
    Option("close-on-exec", kind="flag",
           help="accepted for compatibility: always the case here: accepted connections are created "
                "close-on-exec (accept4 with SOCK_CLOEXEC), so a process an app spawns never inherits them"),
    Option("py-call-uwsgi-fork-hooks", kind="flag",
           help="accepted for compatibility: always the case here: workers are forked with os.fork(), "
                "which runs CPython's fork hooks (os.register_at_fork handlers, threading state)"),
    Option("py-call-osafterfork", kind="flag",
           help="accepted for compatibility: always the case here: workers are forked with os.fork(), "
                "which runs PyOS_AfterFork_Child, so an app's Python signal handlers work in workers"),
    Option("log-master-stream", kind="flag",
           help="accepted for compatibility: always the case here: a message of any size reaches the log "
                "master whole (a SEQPACKET pair read with a buffer larger than any message), what uWSGI's "
                "SOCK_STREAM log pipe is for"),
    Option("log-master-req-stream", kind="flag",
           help="accepted for compatibility: always the case here: request lines of any size reach the log "
                "master whole (as --log-master-stream)"),
)

# What to say about an option, by exact name; the first matching prefix in _PREFIX_REASONS
# otherwise; then the owning plugin (_PLUGIN_REASONS); then uWSGI's own help line.
_EMPEROR = ("the Emperor (one instance supervising vassal configs) is not implemented here; run one "
            "instance per config under systemd or supervisord")
_SUBSCRIBE = ("subscriptions to a uWSGI router are not implemented here; list this instance's socket in "
              "the front proxy's configuration instead")
_ROUTER = ("this uWSGI router is not implemented here; put nginx or haproxy in front (the --http router "
           "serves plain HTTP)")
_METRIC_ALARM = ("metric thresholds are not implemented here: nothing is raised when a metric crosses the "
                 "value; raise an --alarm from a route (alarm:NAME MESSAGE) or watch \"metrics\" in the stats "
                 "server (--stats)")
_CACHE_NET = ("cache replication between nodes is not implemented here: share one cache with --cache2 "
              "name=N,backend=redis://HOST:PORT/DB")
_LOOP = ("this loop engine is not available here; use --async N (cores on one event loop) or --threads N; "
         "requests will be served by the default engine")

REASONS = {
    # greenlet / ugreen are the Python plugin's options (--greenlet, alias --ugreen)
    "ugreen-stacksize": "green threads here are greenlets (--async N --greenlet), whose stacks need no size",
    "emperor": _EMPEROR,
    "https2": ("the HTTP/2 router is not implemented here; --https ADDR,CERT,KEY serves HTTPS/1.1 from the "
               "--http router; the router will not listen on this address"),
    "master-as-root": ("keeping the master as root is not implemented here: the master drops privileges "
                       "with the workers (--uid/--gid)"),
    "cheaper-algo": "only the spare cheaper algorithm is implemented here (--cheaper, --cheaper-step...)",
    "optimize": "setting the Python optimization level is not implemented here: asserts stay on",
    "metric-alarm": _METRIC_ALARM, "alarm-metric": _METRIC_ALARM, "metric-threshold": _METRIC_ALARM,
    "cache-sync": _CACHE_NET, "cache-udp-node": _CACHE_NET, "cache-udp-server": _CACHE_NET,
    "cache-store-sync": ("msync of a cache store every N cycles is not implemented here: the kernel writes the "
                         "shared file back (--cache2 ...,store=PATH)"),
    "cache-no-expire": "disabling the expiry of cache items is not implemented here: expires= is honoured",
    "cache-expire-freq": ("the cache sweeper's frequency does not apply here: expired items are invisible at "
                          "once and reclaimed when the cache is full"),
    "cache-report-freed-items": "there is no cache sweeper here to report (expired items are reclaimed on use)",
    "cache-use-last-modified": ("the per-item last_modified_at is not kept here (the stats' last_modified_at "
                                "is the cache's)"),
}

# Options whose loss leaves nothing to run (the config or the app itself): refused even without
# --strict, since a warning would start an instance that cannot do what the file asks.
_CONFIG_SOURCE = ("this config source is not read here: write the same keys in an ini, yaml or json file "
                  "(--ini, --yaml, --json)")
_APP_LOADER = ("this app loader is not available here: load the WSGI callable with --module or --wsgi-file "
               "(for paste.deploy, a wsgi.py calling paste.deploy.loadapp)")
REFUSED = {
    "xml": "XML config files are not read here: write the same keys in an ini, yaml or json file (--ini...)",
    "xmlconfig": "XML config files are not read here: write the same keys in an ini, yaml or json file (--ini...)",
    "config": _CONFIG_SOURCE, "ldap": _CONFIG_SOURCE, "sqlite": _CONFIG_SOURCE, "sqlite3": _CONFIG_SOURCE,
    "paste": _APP_LOADER, "ini-paste": _APP_LOADER, "ini-paste-logged": _APP_LOADER, "pecan": _APP_LOADER,
}

_PREFIX_REASONS = (
    ("emperor", _EMPEROR), ("vassal", _EMPEROR), ("early-emperor", _EMPEROR), ("auto-emperor", _EMPEROR),
    ("legion", ("Legions (clustering with quorum) are not implemented here; only --legion-attach-daemon and "
                "--legion-cron are understood")),
    ("subscribe", _SUBSCRIBE), ("subscription", _SUBSCRIBE), ("unsubscribe", _SUBSCRIBE),
    # --route*, --final-route*, --error-route*, --response-route*: uwsgid/routing
    ("fastrouter", _ROUTER), ("rawrouter", _ROUTER), ("sslrouter", _ROUTER), ("forkptyrouter", _ROUTER),
    ("zerg", _ROUTER),
    ("ssl-", ("TLS options of uWSGI's routers are not implemented here; TLS is --https, --https-socket "
              "ADDR,CERT,KEY[,CIPHERS[,CA]] and --sni")),
    ("https-", ("this TLS setting of uWSGI's --http router is not implemented here; TLS is --https "
                "ADDR,CERT,KEY[,CIPHERS[,CA]] (in the router), --https-socket (in the workers) and --sni")),
    ("cheaper-busyness", "only the spare cheaper algorithm is implemented here (--cheaper, --cheaper-step...)"),
    ("cheaper-backlog", "only the spare cheaper algorithm is implemented here (--cheaper, --cheaper-step...)"),
)

_PLUGIN_REASONS = {
    "asyncio": _LOOP, "tornado": _LOOP, "coroae": _LOOP, "stackless": _LOOP, "fiber": _LOOP,
}
# uWSGI plugins for languages this server does not run
_LANGUAGES = {"php", "rack", "psgi", "jvm", "jwsgi", "ring", "mono", "v8", "cgi", "go", "gccgo", "pypy",
              "python2", "erlang", "webdav", "xslt", "ssi", "mongrel2", "pty", "forkptyrouter"}


def _table() -> dict[str, tuple[str, str, str]]:
    from uwsgid.config.uwsgi_catalog_table import UWSGI_OPTIONS
    return UWSGI_OPTIONS


def argument(name: str) -> str | None:
    """"flag", "value" or "optional" for an option uWSGI has; None for a name it does not know."""
    entry = _table().get(name)
    return entry[1] if entry else None


def reason(name: str) -> str | None:
    """Why `name` (a uWSGI option this server does not declare) has no effect here and what to
    use instead; None when uWSGI has no such option either."""
    entry = _table().get(name)
    if entry is None:
        return None
    if name in REFUSED:
        return REFUSED[name]
    if name in REASONS:
        return REASONS[name]
    for prefix, text in _PREFIX_REASONS:
        if name.startswith(prefix):
            return text
    owner, _arg, help_ = entry
    if owner in _PLUGIN_REASONS:
        return _PLUGIN_REASONS[owner]
    if owner in _LANGUAGES:
        return (f"uWSGI's {owner} plugin is not available here (this server runs Python WSGI and Lua WSAPI "
                f"apps); the option is ignored")
    whose = "uWSGI" if owner == "core" else f"uWSGI's {owner} plugin"
    return f"not implemented here ({whose}: {help_ or 'no description'}); the option is ignored"


def refused(name: str) -> bool:
    """True for an option without which the instance has nothing to run: an error, --strict or not."""
    return name in REFUSED


def warning(shown: str, why: str, where: str = "") -> str:
    """The loud line for an ignored uWSGI option: `*** WARNING: --gevent is not supported: ... ***`"""
    return f"*** WARNING: {shown} is not supported{where}: {why} ***"
