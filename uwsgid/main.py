"""The entry point: parse options, set up the process, bind, load apps, then run the master
(or, without --master and with one process, the single worker in this process).

    main(argv) -> exit code      argv WITHOUT the program name (./uwsgi and `python -m uwsgid`)

Exit codes: 0 normal stop, 1 bad option / bind error / start-up failure, 22 an app failed to
load (with --need-app, the default).
"""

from __future__ import annotations

import gc
import importlib
import os
import signal
import sys
import time

# isort: off
# cli first: its import declares the core options, which --help and docs/OPTIONS.md list
# before the services' (declared when uwsgid.services is imported)
from uwsgid.config import cli
import uwsgid.services  # noqa: F401  (the shared services declare their options and hooks)
import uwsgid.static  # noqa: F401  (static files: their options, and their master/worker hooks)
import uwsgid.net.raw  # noqa: F401  (--raw-socket, --raw-modifier1/2: raw TCP connections)
import uwsgid.routing  # noqa: F401  (internal routing: its options and master_start hook)
# isort: on
from uwsgid import control
from uwsgid.plugins import loader as plugins_loader
from uwsgid.plugins.contract import AppLoadError, OptionValueError

# these declare options too (master_fifo, procname, rlimits...): imported here for that
from uwsgid.server import daemon, hook_actions, lifetime, master_fifo, procname, reexec, rlimits, user_hooks, waits  # noqa: F401
from uwsgid.server.instance import Server, cleanup
from uwsgid.services import touch_actions
from uwsgid.util import hooks
from uwsgid.util.log import forget_early, log, log_exception, set_date_format

EXIT_APP_LOAD = 22
CONTROL_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
# Blocked from the bind on: SIGTSTP (--pause) too, which would otherwise stop a half-started master.
HELD_SIGNALS = (*CONTROL_SIGNALS, signal.SIGTSTP)


class Interrupted(BaseException):
    """A control signal arrived while the server was starting: it stops the start-up."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _interrupt_start(signum, frame) -> None:
    raise Interrupted(signum)


def _apply_env(opts) -> None:
    for item in opts.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise StartupError(f"--env {item}: expected KEY=VALUE")
        os.environ[key] = value
    for key in opts.unenv:
        os.environ.pop(key, None)


class StartupError(Exception):
    pass


def _apply_umask(opts) -> None:
    """--umask MODE: set as the option is read (uWSGI's UWSGI_OPT_IMMEDIATE), before any file
    or unix socket is made. uWSGI reads 3 octal digits, or the last 3 of 4 (0022)."""
    value = (opts.umask or "").strip()
    if not value:
        return
    import re
    if not re.fullmatch(r"[0-7]?[0-7]{3}", value):
        raise StartupError(f"--umask {opts.umask}: expected an octal mode of 3 or 4 digits, e.g. 022")
    os.umask(int(value[-3:], 8))


def _rpc_hook(arg: str, ctx, retry: bool = False) -> int:
    """The rpc / retryrpc hook actions: `FUNC[@NODE] ARGS...`, the result in the log."""
    import shlex

    from uwsgid.services import rpc
    words = shlex.split(arg)
    if not words:
        log("invalid rpc hook syntax, must be: FUNC[@NODE] [ARGS...]")
        return -1
    func, _, node = words[0].partition("@")
    args = [w.encode() for w in words[1:]]
    while True:
        try:
            result = (rpc.call_remote(node, func.encode(), args) if node
                      else rpc.call_local(func.encode(), args))
        except (rpc.RpcError, ValueError) as e:
            log(f"uwsgi: rpc hook {words[0]}: {e}")
            result = None
        if result is not None:
            log(f"[rpc result from \"{words[0]}\"] {result.decode('utf-8', 'replace')}")
            return 0
        if not retry:
            return -1
        time.sleep(2)


hook_actions.register("rpc", _rpc_hook)
hook_actions.register("retryrpc", lambda arg, ctx: _rpc_hook(arg, ctx, retry=True))


def _check_hooks(opts) -> None:
    """Hook lines, lifetime and touch options checked before anything runs (StartupError: exit 1)."""
    try:
        warnings = user_hooks.check(opts)
        lifetime.check(opts)
        touch_actions.check(opts)
    except (user_hooks.HookFailed, lifetime.LifetimeError, touch_actions.TouchError) as e:
        raise StartupError(str(e)) from None
    for line in warnings:
        if opts.strict:
            raise StartupError(f"{line} (--strict)")
        log(f"*** WARNING: {line} ***")


def _run_hooks(phase: str, opts, server=None) -> None:
    """A start-up phase's hooks: a fatal failure stops the start (exit 1, or the exit action's code)."""
    try:
        user_hooks.run(phase, opts, server)
    except user_hooks.HookExit as e:
        raise HookStop(e.code) from None
    except user_hooks.HookFailed as e:
        raise StartupError(str(e)) from None


class HookStop(Exception):
    """The exit hook action ran during the start: the process exits with `code`."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


def _load_plugins(server, extra_plugins) -> None:
    from uwsgid.services.rpc import RpcPlugin
    plugins = [*plugins_loader.loaded(), *(extra_plugins or ()), RpcPlugin()]
    for p in plugins:
        if p.modifier1 is None or p.modifier1 < 0:
            continue
        other = server.plugins.setdefault(p.modifier1, p)
        if other is not p:
            log(f"*** modifier1 {p.modifier1} is already served by {other.name}: {p.name} ignored "
                f"(give it another one with --plugins N:{p.name}) ***")


def _bind(server) -> None:
    from uwsgid.net import sockets
    try:
        server.listeners = list(sockets.bind_all(server.opts))   # adopts a reload's inherited fds
    except (sockets.BindError, OSError, ValueError) as e:
        raise StartupError(str(e) or repr(e)) from None
    if not (server.opts.http or server.opts.https):
        for fd in reexec.inherited_router_sockets().values():   # --http dropped since the reload
            try:
                os.close(fd)
            except OSError:
                pass
    else:
        from uwsgid.server import router
        try:
            server.router_sockets = router.bind(server.opts)
        except (OSError, ValueError) as e:
            raise StartupError(str(e)) from None


def _banner(server) -> None:
    opts = server.opts
    log(f"*** Starting uWSGI {server.version} (64bit) on [{time.ctime()}] ***")
    # os.uname and sys.version rather than `platform`, which every forked worker would carry
    uname = os.uname()
    _, bracket, compiler = sys.version.rpartition("[")
    compiler = compiler.split("]")[0] if bracket else ""
    log(f"compiled with version: {compiler} (Python {sys.version.split()[0]})")
    log(f"os: {uname.sysname}-{uname.release} {uname.version}")
    import socket  # here, not at the top: --version and --help do without it
    log(f"nodename: {socket.gethostname()}")
    log(f"machine: {uname.machine}")
    log(f"detected number of CPU cores: {os.cpu_count()}")
    log(f"current working directory: {os.getcwd()}")
    if opts.pidfile:
        log(f"writing pidfile to {opts.pidfile}")
    log(f"detected binary path: {reexec.binary_path()}")
    if not opts.master:
        log("*** WARNING: you are running uWSGI without its master process manager ***")


def _log_listeners(server) -> None:
    for i, lst in enumerate(server.listeners):
        name = getattr(lst, "address", None) or getattr(lst, "name", "?")
        fd = lst.sock.fileno()
        kind = "UNIX" if getattr(lst, "path", None) or str(name).startswith("@") else "TCP"
        if getattr(lst, "proto", "uwsgi") == "http":
            label = "https" if getattr(lst, "tls", None) is not None else "http"
            log(f"uwsgi socket {i} bound to {kind} address {name} fd {fd} ({label})")
        else:
            log(f"uwsgi socket {i} bound to {kind} address {name} fd {fd}")
    for s, name in server.router_sockets:
        log(f"uWSGI http bound on {name} fd {s.fileno()}")


def _http_parser(server) -> None:
    """httptools, for an instance that parses HTTP in Python (after the pidfile: it takes a while)."""
    if any(lst.proto == "http" for lst in server.listeners) or server.opts.http or server.opts.https:
        from uwsgid.net.protocols import http
        if _single(server):
            http.require()  # imported with the first request the lane does not parse
        else:
            # before the apps and the freeze: the workers share it (a POST would make each import
            # it: 2.3 MB private), and imported here rather than just before the fork, its
            # objects are not spread among those the workers write (0.15 MB private a worker)
            http.load()


def _write_pidfile(server, path: str) -> None:
    """Absolute, so that --vacuum finds it whatever --chdir/--chdir2 did meanwhile."""
    path = os.path.abspath(path)
    daemon.write_pidfile(path, server.master_pid)
    server.pidfiles.append(path)


# Standard modules the code imports where it needs them (error paths, rare options, reloads),
# so that every worker does not carry them (tests/test_rss_imports.py keeps them out); ast and
# unicodedata are what traceback itself imports when it formats a traceback; importlib.util is
# what uwsgid.embed's report of a missing module uses.
DEFERRED_IMPORTS = ("traceback", "ast", "unicodedata", "json", "ctypes", "runpy", "tempfile", "shlex",
                    "glob", "importlib.util", "urllib.parse", "subprocess", "atexit", "syslog", "ssl",
                    "hashlib", "base64", "ipaddress", "uuid", "email.utils", "crypt", "concurrent.futures", "gzip",
                    "httptools")    # not standard: with the first head the native lane leaves to Python


def _single(server) -> bool:
    """No master: this process serves as the only worker."""
    opts = server.opts
    return not opts.master and server.numproc == 1 and not opts.http and not opts.https and not opts.stats


def _preimport(opts, single: bool = False) -> None:
    """What the master and the workers need, imported while the files are surely readable
    (before --uid/--gid: an interpreter under a private home is unreadable afterwards).
    `single`: no master will run (its module is then left out, unless --uid/--gid)."""
    import uwsgid.observe.scoreboard  # noqa: F401
    import uwsgid.observe.stats  # noqa: F401
    import uwsgid.server.worker  # noqa: F401
    if not single:
        import uwsgid.server.master  # noqa: F401
    if opts.http:
        import uwsgid.server.router  # noqa: F401  (already imported by _bind; spawn_router needs it)
    if opts.uid or opts.gid:
        for name in DEFERRED_IMPORTS:
            importlib.import_module(name)
        _import_package(uwsgid)


def _import_package(package) -> None:
    """Every module of the server, so that none is first read after the drop (any of them may
    be needed later: a service's module on its first use, the router on a reload)."""
    import pkgutil
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if info.name not in ("uwsgid.__main__", "uwsgid.options_doc"):
            importlib.import_module(info.name)


def _configure_plugins(server) -> int | None:
    """plugin.configure for each plugin; exit code on a fatal app load error, else None."""
    for p in list(server.plugins.values()):
        try:
            p.configure(server.opts, server)
        except OptionValueError as e:
            log(f"uwsgi: {e}")
            return 1
        except AppLoadError as e:
            msg = str(e).strip() or f"{p.name}: app failed to load"
            if server.opts.need_app:
                first, _, detail = msg.partition("\n")
                log(f"uwsgi: {first}")
                if detail:
                    log(detail)
                if server.unreadable_paths:     # the likely cause of a module not found
                    log(f"uwsgi: {daemon.unreadable_hint(server.unreadable_paths)}")
                log("*** no app loaded. GAME OVER ***" if len(server.plugins) == 1 else
                    f"*** {p.name} app failed to load (--need-app). GAME OVER ***")
                return EXIT_APP_LOAD
            log(f"*** {p.name}: {msg} (continuing: --need-app is off) ***")
    return None


def _warn_unreachable_apps(server) -> None:
    """An app whose modifier1 no socket sends would answer every request 503: say so now, with
    the option that fixes it. A uwsgi-protocol socket reaches every modifier1 (nginx's
    uwsgi_modifier1 picks it per request); an HTTP socket and the --http router send one."""
    opts = server.opts
    if any(lst.proto == "uwsgi" and not lst.internal for lst in server.listeners):
        return
    http = [lst for lst in server.listeners if lst.proto == "http"]
    sent = {lst.modifier1 for lst in http} | ({int(opts.http_modifier1 or 0)} if opts.http else set())
    fixes = " or ".join((["--http-socket-modifier1"] if http else []) + (["--http-modifier1"] if opts.http else []))
    for m1, plugin in sorted(server.plugins.items()):
        if plugin.title and plugin.has_app() and m1 not in sent:
            log(f"*** WARNING: the {plugin.title} app is loaded, but no socket sends its "
                f"modifier1 {m1} (they send {', '.join(map(str, sorted(sent)))}): add {fixes} {m1}, or put "
                f"it behind nginx on a --socket with uwsgi_modifier1 {m1} ***")


def main(argv: list[str], extra_plugins=None) -> int:
    """Run the server; returns the process exit code. `extra_plugins` (tests) adds Plugin objects."""
    # First thing: a control signal inherited as ignored (a script's `./uwsgi ... &`) must
    # still reach us. Until the master's or the worker's handlers take over, it stops the start.
    for sig in CONTROL_SIGNALS:
        signal.signal(sig, _interrupt_start)
    try:
        return _main(argv, extra_plugins)
    except Interrupted as e:
        log(f"uwsgi: {signal.Signals(e.signum).name} received while starting: stopped")
        return 128 + e.signum
    except KeyboardInterrupt:
        log("uwsgi: interrupted while starting")
        return 130


def _main(argv: list[str], extra_plugins) -> int:
    argv = [str(a) for a in argv]
    cli.use_plugin_loader(plugins_loader)

    try:
        opts = cli.parse(argv)
    except cli.CliError as e:
        sys.stderr.write(f"uwsgi: {e}\n")
        sys.stderr.flush()
        return 1
    set_date_format(opts.log_date)    # --log-date: from here on, server messages are dated
    rc = cli.informational(opts)
    if rc is None:
        rc = control.act(opts)     # --stop/--reload/--pause/--resume/--signal: act on a running instance
    if rc is not None:
        return rc

    reloading = reexec.is_reexec()
    from uwsgid.plugins import api  # imported once the server is going to run (stats, socket...)
    server = Server(opts, argv)
    api.server = server
    try:
        _apply_umask(opts)
        _check_hooks(opts)
        _apply_env(opts)
        _run_hooks("asap", opts)
        if opts.thread_slots is not None and opts.thread_slots < 0:
            raise StartupError(f"--thread-slots {opts.thread_slots}: must be 0 (no limit) or more")
        if not (opts.honour_stdin or opts.get("lua-shell")):   # a shell implies --honour-stdin
            daemon.stdin_to_devnull()
        if opts.daemonize and not reloading:
            daemon.daemonize(opts.daemonize)
            server.master_pid = os.getpid()
        daemon.open_logs(opts, reloading)     # --logto, the log master (--logger, --log-maxsize...)
        _banner(server)
        if not reloading:
            _run_hooks("pre-jail", opts, server)
        _run_hooks("in-jail", opts, server)
        waits.before_apps(opts)
        if opts.chdir:
            try:
                os.chdir(opts.chdir)
            except OSError as e:
                raise StartupError(f"chdir() to {opts.chdir}: {e.strerror}") from None
            log(f"chdir() to {opts.chdir}")
        for line in opts.get("print", []) or []:
            log(line)
        _load_plugins(server, extra_plugins)
        # From the moment clients can connect, control signals wait (blocked, pending) for the
        # master's handlers instead of killing a half-started instance.
        signal.pthread_sigmask(signal.SIG_BLOCK, HELD_SIGNALS)
        rlimits.apply(opts, log)        # where uWSGI sets them: still root, before binding
        _bind(server)
        if not server.listeners and not server.router_sockets:
            raise StartupError("The -s/--socket option is missing and stdin is not a socket.")
        _log_listeners(server)
        if opts.pidfile:
            _write_pidfile(server, opts.pidfile)
        _http_parser(server)
        _preimport(opts, _single(server))
        waits.before_root_hooks(opts)    # --wait-for-interface/-fs/-mountpoint (root only)
        as_root = os.getuid() == 0       # uWSGI runs the as-root/as-user hooks only when started as root
        if as_root:
            _run_hooks("as-root", opts, server)
        server.unreadable_paths = daemon.drop_privileges(opts.uid, opts.gid, log)
        if as_root:
            _run_hooks("as-user", opts, server)
        if opts.pidfile2:
            _write_pidfile(server, opts.pidfile2)
        if opts.logto2:
            daemon.redirect_log(opts.logto2)
    except (StartupError, daemon.DaemonError, waits.WaitTimeout) as e:
        log(f"uwsgi: {e}")
        cleanup(server)
        return 1
    except HookStop as e:
        cleanup(server)
        return e.code

    from uwsgid.observe.scoreboard import Scoreboard
    server.scoreboard = Scoreboard(server.numproc, server.cores, server.plugins)
    single = _single(server)
    if not single:
        from uwsgid.server.master import Master
        Master(server)      # sets server.master: services may add readers/timers at master_start
    try:
        hooks.run("master_start", server)
    except Exception:
        log_exception("uwsgi: a service failed to start:")
        cleanup(server)
        return 1
    if not gc.isenabled():
        # ./uwsgi ran the server's own start-up without the cyclic GC (uwsgid.embed). What it
        # made lives as long as the process: frozen, no collection walks it again, in the master
        # or in a forked worker (whose pages it then leaves shared). The apps load with the GC
        # on, as usual.
        gc.freeze()
        gc.enable()
    try:
        if not server.lazy_apps:      # with --lazy-apps each worker runs them around its apps
            _run_hooks("pre-app", opts, server)
        rc = _configure_plugins(server)
        if rc is None and not server.lazy_apps:
            _run_hooks("post-app", opts, server)
    except StartupError as e:
        log(f"uwsgi: {e}")
        rc = 1
    except HookStop as e:
        rc = e.code
    if rc is not None:
        cleanup(server)
        return rc
    if not server.lazy_apps:
        # What the apps made before fork is frozen too: a collection in a worker would walk it
        # and write to every page that holds it, unsharing them from the master.
        gc.freeze()
    _warn_unreachable_apps(server)
    if opts.chdir2:
        try:
            os.chdir(opts.chdir2)
        except OSError as e:
            log(f"uwsgi: chdir() to {opts.chdir2}: {e.strerror}")
            return 1
    if opts.daemonize2 and not reloading:
        daemon.daemonize(opts.daemonize2)
        server.master_pid = os.getpid()
        for path in list(server.pidfiles):
            daemon.write_pidfile(path, server.master_pid)

    forget_early()          # every log file of the start-up has its lines by now
    if single:
        return _run_single(server)
    return server.master.run()


def _run_single(server) -> int:
    """No master: this process is worker 1 (uWSGI's behaviour for `uwsgi --socket ... ` alone)."""
    from uwsgid.server.worker import Worker
    log(f"spawned uWSGI worker 1 (and the only) (pid: {os.getpid()}, cores: {server.cores})")
    server.scoreboard.spawned(1, os.getpid(), False)
    try:
        rc = Worker(1, server).run()     # unblocks the held signals once its handlers are in
    except (KeyboardInterrupt, Interrupted):
        rc = 0
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    except BaseException:
        log_exception("uwsgi: worker 1 crashed:")
        rc = 1
    try:
        user_hooks.run("as-user-atexit", server.opts, server)
    except user_hooks.HookExit:
        pass
    cleanup(server)
    log("goodbye to uWSGI.")
    return int(rc or 0)
