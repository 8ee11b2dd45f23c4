"""Shared services for both runtimes: caches, RPC, signals/timers, locks, metrics, mules.

Apps reach them through uwsgid.services.api (wrapped by the Lua and Python `uwsgi` modules).
This package declares the services' options and plugs them into the server through
uwsgid.util.hooks, so the core never imports a service:

    master_start   setup(): shared memory, locks and signal channels, before the first fork;
                   adds the RPC (173) and remote signal (110) handlers to server.plugins;
                   starts the master's signal/timer thread
    worker_start   the worker keeps its signal channel
    worker_loop_start  the worker's signal channels are watched by its (first) loop
    master_tick    --metrics-dir files; spawns the mules (first tick) and respawns dead ones
    stats          "locks", "metrics" and "caches" in the stats JSON
It also serves %(metric.NAME) in --log-format (uwsgid.observe.reqlog.provide).
    shutdown       stops the mules and the master's thread
The spooler (spooler.py: options, API) has its own hooks, run only when a spooler is configured:
master_start, master_tick, child_exited, stats, shutdown (spooler_master.py).
The command crons (cron.py) and the attached daemons (daemons.py) register their own hooks.

setup() is idempotent and also runs on first use (channels.ensure), so an app that touches the
cache while it is being loaded by the master (before master_start) gets the same shared memory.

The modules, one concern each, and the direction of their imports: README.md.
"""

from __future__ import annotations

from uwsgid.config.options import Option, declare
from uwsgid.observe import reqlog
from uwsgid.services import channels, spooler  # spooler: its options
from uwsgid.util import hooks
from uwsgid.util.log import log

declare(
    Option("cache2", kind="str", multi=True, group="core",
           metavar="name=NAME,items=N[,blocksize=B][,keysize=K][,purge_lru=1][,store=PATH][,backend=redis://H:P/DB]",
           help="create a shared cache (several allowed; the first is the default). blocksize (default 64k) "
                "bounds a value, unless bitmap=1 with blocks=N (uWSGI's bitmap cache: a value spans up to N "
                "contiguous blocks); purge_lru=1 evicts the least recently used item when full; store=PATH keeps "
                "it in a file across restarts; backend=redis://HOST:PORT/DB[,prefix=P] puts it on a Redis "
                "server shared by several instances"),
    Option("cache", kind="int", default=0, group="core", metavar="N",
           help="create the legacy default cache with N items (blocksize from --cache-blocksize)"),
    Option("cache-blocksize", kind="size", default=65536, group="core",
           help="block (maximum value) size of the legacy --cache"),
    Option("add-cache-item", kind="str", multi=True, group="core", metavar="[CACHE ]KEY=VALUE",
           help="store KEY=VALUE in the caches at start-up (in CACHE only when named)"),
    Option("load-file-in-cache", kind="str", multi=True, group="core", metavar="[CACHE ]PATH",
           help="store the file's content in the caches at start-up, its path as the key"),
    Option("load-file-in-cache-gzip", kind="str", multi=True, group="core", metavar="[CACHE ]PATH",
           help="as --load-file-in-cache, the content gzip-compressed"),
    Option("cache-store", needs_master=True, kind="str", group="core", metavar="PATH",
           help="keep the legacy --cache in the file PATH, so that its content survives restarts"),
    Option("locks", kind="int", default=0, group="core",
           help="create N user locks besides lock 0 (uwsgi.lock(n) with n in 0..N)"),
    Option("metric", needs_master=True, kind="str", multi=True, group="core",
           metavar="name=NAME[,type=counter|gauge|absolute][,initial_value=N]",
           help="declare a metric (exported in the stats JSON, changed with uwsgi.metric_*)"),
    Option("metrics-dir", needs_master=True, kind="str", group="core",
           help="write each metric's value to a file named after it in DIR (refreshed every second)"),
    Option("metrics-dir-restore", needs_master=True, kind="flag", group="core",
           help="restore the metrics' values from --metrics-dir at start-up"),
    Option("enable-metrics", needs_master=True, kind="flag", group="core",
           help="accepted for compatibility: declared metrics are always enabled"),
    Option("mule", needs_master=True, kind="optional", const="", multi=True, group="core", metavar="[FILE]",
           help="add a mule: a process beside the workers running FILE (.py or .lua) and handling "
                "the signals of targets mule/mule<N>/mules and uwsgi.mule_msg messages"),
    Option("mules", needs_master=True, kind="int", default=0, group="core", help="add N mules without a script"),
)

def setup(opts=None) -> None:
    """Create every shared structure (master, before fork). opts: the parsed Options; None =
    the running server's, or the defaults (no cache, lock 0, no metric) when there is none."""
    channels.set_up_once(lambda: _create_all(opts))


def _create_all(opts) -> None:
    from uwsgid.plugins import api as core_api
    if opts is None and core_api.server is not None:
        opts = core_api.server.opts
    from uwsgid.services import cache, locks, metrics, mules, signals
    get = (lambda name, default: opts.get(name, default)) if opts is not None else (lambda name, default: default)
    locks.setup(int(get("locks", 0) or 0))
    cache.setup(list(get("cache2", []) or []), int(get("cache", 0) or 0),
                int(get("cache-blocksize", 65536) or 65536), get("cache-store", None),
                get("add-cache-item", []) or [], get("load-file-in-cache", []) or [],
                get("load-file-in-cache-gzip", []) or [])
    metrics.setup(list(get("metric", []) or []), get("metrics-dir", None), bool(get("metrics-dir-restore", False)))
    nmules = mules.setup(list(get("mule", []) or []), int(get("mules", 0) or 0))
    channels.create(int(get("processes", 1) or 1), nmules)
    signals.setup()


channels.on_first_use(setup)


def ensure() -> None:
    channels.ensure()


def service_plugins() -> list:
    """The services' request handlers for the modifier1 map: RPC (173) and remote signals (110)."""
    from uwsgid.services.remote_signals import remote_plugin
    from uwsgid.services.rpc import plugin as rpc_plugin
    return [rpc_plugin, remote_plugin]


# ---- hooks ----------------------------------------------------------------------------------

def _master_start(server) -> None:
    from uwsgid.services import timers
    try:
        setup(getattr(server, "opts", None))
    except (ValueError, OSError) as exc:
        # a bad --cache2 / --metric / --locks: one line naming it, exit 1 (no traceback)
        log(f"uwsgi: {exc}")
        raise SystemExit(1) from None
    # serve modifier1 173 (RPC) and 110 (remote signals) unless a plugin already claimed them
    plugins = getattr(server, "plugins", None)
    if isinstance(plugins, dict):
        for p in service_plugins():
            plugins.setdefault(p.modifier1, p)
    timers.start_master()


def _worker_start(worker) -> None:
    from uwsgid.services import signal_receiver
    ensure()
    signal_receiver.worker_started(int(getattr(worker, "id", 0) or getattr(worker, "wid", 0) or 1))
    add_reader = getattr(worker, "add_reader", None)
    if add_reader is not None:
        # the worker runs the callbacks in its loop 0, between requests
        signal_receiver.add_readers(add_reader)


def _worker_loop_start(loop) -> None:
    from uwsgid.plugins import api as core_api
    from uwsgid.services import signal_receiver
    if signal_receiver.watched():
        return
    add_reader = getattr(loop, "add_reader", None)
    if add_reader is None and core_api.worker is not None:
        add_reader = getattr(core_api.worker, "add_reader", None)
    if add_reader is not None:
        signal_receiver.add_readers(add_reader)
    else:
        log("services: the worker loop has no add_reader: signal handlers run in a helper thread")
        signal_receiver.start_worker_thread()


def _master_tick(server) -> None:
    from uwsgid.services import metrics, mules
    metrics.write_dir()
    if mules.count():
        mules.supervise(server)


def _stats(stats: dict) -> None:
    from uwsgid.services import cache, locks, metrics
    if not channels.ready():
        return
    stats["locks"] = locks.stats()
    stats["metrics"] = metrics.snapshot()
    caches = cache.all_stats()
    if caches:
        stats["caches"] = caches


def _shutdown(server) -> None:
    from uwsgid.services import metrics, mules, timers
    metrics.write_dir()
    mules.stop(max(1, int(server.opts.get("mule-reload-mercy", 60) or 60)))     # then SIGKILL
    timers.stop_master()


def _metric_for_log(name: str) -> bytes:
    """%(metric.NAME) in --log-format: the metric's value, b"" when there is no such metric."""
    from uwsgid.services import metrics
    value = metrics.get(name.encode())
    return b"" if value is None else b"%d" % value


# ---- the spooler (spooler.py: options and API; spooler_master.py: its processes, imported only
# by an instance that has spoolers) ----

def _spooler_master_start(server) -> None:
    opts = getattr(server, "opts", None)
    if opts is not None and (opts.get("spooler") or opts.get("spooler-external")):
        from uwsgid.services import spooler_master
        spooler_master.master_start(server)


def _spooler_hook(name: str):
    def run(*args) -> None:
        if spooler.dirs:
            from uwsgid.services import spooler_master
            getattr(spooler_master, name)(*args)
    return run


hooks.register("master_start", _master_start)
hooks.register("master_start", _spooler_master_start)
hooks.register("worker_start", _worker_start)
hooks.register("worker_loop_start", _worker_loop_start)
hooks.register("master_tick", _master_tick)
hooks.register("master_tick", _spooler_hook("master_tick"))
hooks.register("child_exited", _spooler_hook("child_exited"))
hooks.register("stats", _stats)
hooks.register("stats", _spooler_hook("add_stats"))
hooks.register("shutdown", _shutdown)
hooks.register("shutdown", _spooler_hook("shutdown"))
reqlog.provide("metric", _metric_for_log)

# --cron, --attach-daemon and --alarm: their options and hooks (after the mules': uWSGI starts
# the daemons after the mules, and mule: alarms need them)
from uwsgid.services import alarm, cron, daemons  # noqa: E402,F401
