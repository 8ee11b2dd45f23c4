"""The Python WSGI plugin (modifier1 0), uWSGI's "cffi" plugin: runs on the CPython that
./uwsgi embeds. Modules by concern: options, loader (apps), environ, wsgi_input, response,
uwsgi_module (the `uwsgi` module), evalexec (--cffi-eval/--cffi-exec), autoreload.

A --cffi-init module may change how requests are served by patching `cffi_plugin.plugin`
(e.g. wrap plugin.request) or replace the worker loop with uwsgid.plugins.api.set_loop(fn).

Importing the package is cheap (the options and this class): the modules that serve Python
(environ, response, the `uwsgi` module and the services behind it...) are imported by setup(),
when a Python app or option is configured, not by every ./uwsgi that embeds the plugin.
"""

from __future__ import annotations

import importlib
import sys

from uwsgid.config.options import lookup
from uwsgid.plugins.contract import AppLoadError, LaneApp, OptionValueError, Plugin
from uwsgid.util.log import log

from .options import ENGINE_OPTIONS, OPTIONS
from .raw_tcp import RAW_OPTIONS

# bound by _machinery(): what configure, the workers and the request path use (the submodules
# autoreload, evalexec and uwsgi_module too: not pre-bound here, or `from . import` would skip them)
base_defaults = build_environ = Apps = add_pythonpath = add_virtualenv = user_traceback = None
FileWrapper = Response = ErrorStream = None


def _machinery() -> None:
    global autoreload, evalexec, uwsgi_module, base_defaults, build_environ, Apps, add_pythonpath
    global add_virtualenv, user_traceback, FileWrapper, Response, ErrorStream
    if Response is not None:
        return
    from . import autoreload, evalexec, uwsgi_module
    from .environ import base_defaults, build_environ
    from .loader import Apps, add_pythonpath, add_virtualenv, user_traceback
    from .response import FileWrapper, Response
    from .wsgi_input import ErrorStream


def _wanted(opts) -> bool:
    """Is any of the plugin's options given (an app, --pythonpath, --cffi-eval...)?"""
    is_set = getattr(opts, "is_set", None)
    if is_set is None:          # a plain namespace (tests): assume so
        return True
    return any(is_set(o.name) for o in OPTIONS + RAW_OPTIONS)


def _suspend_engine(opts):
    """--greenlet: checked at start-up (one line and exit 1 when it cannot work), and the
    Response class that runs requests in greenlets; None without the option."""
    if not getattr(opts, "greenlet", False):
        return None
    is_set = getattr(opts, "is_set", None)
    cores = int(opts.get("async") or 0) if is_set is None or is_set("async") else 0
    if cores < 1:
        raise OptionValueError("--greenlet: the greenlet suspend engine requires async mode (--async N)")
    try:
        from .greenlet_cores import GreenResponse
    except ImportError as e:
        raise OptionValueError(f"--greenlet: the greenlet package cannot be imported ({e}); "
                               f"install it in the Python that runs the server (pip install greenlet)") from None
    log("enabled greenlet engine")
    return GreenResponse


def _gevent(opts) -> None:
    """--gevent N and its companions, checked at start-up (one line and exit 1 when they cannot
    work): --async becomes N (uWSGI's shortcut), --socket-timeout at least 30 s (as uWSGI), and
    --gevent-early-monkey-patch patches here, before the apps load. The worker side is
    uwsgid.server.gevent_loop."""
    is_set = getattr(opts, "is_set", None)
    if is_set is None:
        return
    n = opts.gevent if is_set("gevent") else None
    if n is None:
        for flag in ("gevent-monkey-patch", "gevent-early-monkey-patch", "gevent-wait-for-hub"):
            if opts.get(flag):
                raise OptionValueError(f"--{flag}: needs the gevent loop engine (--gevent N)")
        return
    if n < 1:
        raise OptionValueError(f"--gevent {n}: the number of async cores must be 1 or more")
    if int(opts.threads or 1) > 1:
        raise OptionValueError(f"--gevent with --threads {opts.threads}: one gevent hub per worker runs in "
                               f"one thread; scale with --processes (or use --threads without --gevent)")
    if opts.greenlet:
        raise OptionValueError("--gevent with --greenlet: pick one (--gevent runs every Python request "
                               "in a greenlet already)")
    try:
        import gevent
    except ImportError as e:
        raise OptionValueError(f"--gevent: the gevent package cannot be imported ({e}); install it in "
                               f"the Python that runs the server (pip install gevent)") from None
    opts.set(lookup("async"), n)
    if float(opts.socket_timeout or 0) < 30:
        opts.set(lookup("socket-timeout"), 30)
    if opts.gevent_early_monkey_patch and not (opts.lazy_apps or opts.lazy):
        _early_monkey_patch(thread=False)
    log(f"enabled gevent engine ({n} async cores, gevent {gevent.__version__})")


def _early_monkey_patch(thread: bool) -> None:
    """--gevent-early-monkey-patch, before the apps load: in the master (its own threads, the
    log and signal timers, are not greenlets: `thread` is patched in each worker before it
    serves, uwsgid.server.gevent_loop), or with --lazy-apps in the worker. Not aggressive: the
    server's loops keep select.epoll (the hub watches them)."""
    from gevent import monkey
    monkey.patch_all(thread=thread, aggressive=False)


def _asgi_adapter(obj, record, spec: str, forced: bool):
    """Apps.asgi_adapter: asyncio and the ASGI modules load only when an ASGI app does."""
    from . import asgi
    return asgi.adapter(obj, record, spec, forced)


class CffiPlugin(Plugin):
    name = "cffi"
    title = "Python (WSGI)"
    modifier1 = 0
    # --gevent (uwsgid.server.gevent_loop): its requests run in greenlets of the hub (they may
    # block on anything gevent patches)
    gevent_greenlets = True
    options = OPTIONS + ENGINE_OPTIONS + RAW_OPTIONS

    def __init__(self):
        self.apps = None            # an Apps once set up
        self.opts = None
        self.server = None
        self.module = None          # the `uwsgi` module
        self.base_environ: dict = {}
        self._loaded = False
        self.raw = None             # the --python-raw handler (raw_tcp.RawHandler)
        self.asgi_apps: list = []   # the ASGI apps' cffi_plugin.asgi.AsgiApp, in load order
        self._asgi_only = None      # the AsgiApp when it is the one app and nothing picks by path

    # ---- lifecycle --------------------------------------------------------------------------

    def configure(self, opts, server) -> None:
        self.opts = opts
        self.server = server
        _gevent(opts)
        engine = _suspend_engine(opts)
        if getattr(opts, "greenlet_cooperative", False) and engine is None:
            raise OptionValueError("--greenlet-cooperative: needs the greenlet suspend engine (--async N --greenlet)")
        if _wanted(opts):
            self.setup()
            if engine is not None:
                global Response
                Response = engine       # request() builds GreenResponses from now on
        from uwsgid.plugins import code
        if self.module is not None or any(w[0] == "python" for w in code.WANTED):
            if self.module is None:     # python: routes in front of a Lua app
                _machinery()
                self.module = uwsgi_module.install(self.server)
            from . import hooks
            hooks.configure(opts)       # the `python:` routes, --python-hooks (hooks.py)

    def setup(self) -> None:
        """Set the Python side up for the configured options: the `uwsgi` module, sys.path, the
        base environ, --cffi-init/eval/exec, the apps (unless lazy). configure() calls it when
        one of the plugin's options is given; without any there is nothing to serve."""
        if self.apps is not None:
            return
        _machinery()
        opts = self.opts
        self.apps = Apps()
        self.apps.manage_script_name = bool(opts.manage_script_name)
        self.apps.vhost = bool(opts.vhost or opts.vhost_host)
        self.apps.chdir = opts.chdir or ""
        self.apps.asgi_adapter = _asgi_adapter
        self.module = uwsgi_module.install(self.server)
        if opts.home:
            add_virtualenv(opts.home)
        add_pythonpath(opts.pythonpath)
        if opts.pyargv:
            import shlex  # only --pyargv needs it: not carried by every worker
            sys.argv = ["uwsgi", *shlex.split(opts.pyargv)]
        elif not getattr(sys, "argv", None):
            sys.argv = ["uwsgi"]        # argparse & co. in apps expect argv[0]
        self.base_environ = self._base_environ(opts)
        for name in opts.cffi_init:
            self._import_module(name, "cffi-init")
        for code in opts.cffi_eval:
            evalexec.run_code(code, "cffi-eval")
        for path in opts.cffi_exec:
            evalexec.run_file(path, "cffi-exec")
        if not (opts.lazy_apps or opts.lazy):
            self.load_apps()
            self._check_asgi()

    def post_fork(self, worker) -> None:
        opts = self.opts
        if opts is None or self.apps is None:
            return
        uwsgi_module.refresh_after_fork(self.module)
        if (opts.lazy_apps or opts.lazy) and not self._loaded:
            if opts.gevent > 0 and opts.gevent_early_monkey_patch:
                _early_monkey_patch(thread=True)
            self.load_apps()
            try:
                self._check_asgi()
            except OptionValueError as e:
                raise AppLoadError(str(e)) from None
        for code in opts.cffi_eval_post_fork:
            evalexec.run_code(code, "cffi-eval-post-fork")
        for path in opts.cffi_exec_post_fork:
            evalexec.run_file(path, "cffi-exec-post-fork")
        if getattr(opts, "greenlet_cooperative", False):
            from . import cooperative, cooperative_ssl  # the worker's standard library only
            cooperative.install()
            cooperative_ssl.install()
        if opts.py_autoreload and opts.py_autoreload > 0:
            autoreload.start(opts.py_autoreload)
        hook = getattr(self.module, "post_fork_hook", None)
        if callable(hook):
            try:
                hook()
            except Exception:
                import traceback
                log("[cffi] error in uwsgi.post_fork_hook():\n" + traceback.format_exc())

    def init_core(self, core) -> None:
        if self.asgi_apps:
            from . import asgi
            asgi.init_core(core, self.asgi_apps)    # the loop's asyncio driver; lifespan startup

    def has_app(self) -> bool:
        return self.apps is not None and bool(self.apps.apps)

    def stats_apps(self) -> list[dict]:
        if self.apps is None:
            return []
        return [{"id": a.id, "modifier1": self.modifier1, "mountpoint": a.mountpoint,
                 "startup_time": int(a.startup_time), "requests": a.requests,
                 "exceptions": a.exceptions, "chdir": a.chdir} for a in self.apps.apps]

    def shutdown(self) -> None:
        if self.asgi_apps:
            from uwsgid.plugins import api

            from . import asgi
            w = api.worker
            asgi.shutdown(self.asgi_apps, bool(getattr(w, "abort", False)), self.opts.get("worker_reload_mercy"))
        sys.stderr.flush()
        sys.stdout.flush()

    script_extensions = (".py",)

    def run_script(self, path: str) -> None:
        """A --mule FILE.py: run as __main__, with `import uwsgi` working."""
        if "uwsgi" not in sys.modules:
            _machinery()
            uwsgi_module.install(self.server)
        import runpy  # only mules run scripts: not carried by every worker
        runpy.run_path(path, run_name="__main__")

    # ---- apps -------------------------------------------------------------------------------

    def _base_environ(self, opts) -> dict:
        threads = int(opts.threads or 1)
        cores = int(opts.get("async") or 1)
        base = base_defaults()
        base.update({
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": ErrorStream(),
            "wsgi.multithread": threads > 1,
            "wsgi.multiprocess": int(opts.processes or 1) > 1,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
            # Our wsgi.input always ends (bounded by CONTENT_LENGTH, or the de-chunked body).
            "wsgi.input_terminated": True,
            "uwsgi.version": self.module.version,
            "uwsgi.node": self.module.hostname,
            "uwsgi.async": cores,
        })
        return base

    def _import_module(self, name: str, option: str) -> None:
        try:
            importlib.import_module(name)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as e:
            log(f"[cffi] error importing --{option} {name}:\n{user_traceback(e)}")
            raise AppLoadError(f"--{option} {name}: {type(e).__name__}: {e}") from e

    def load_apps(self) -> None:
        """Every configured app, in uWSGI's order; the first loaded is the default."""
        self._loaded = True
        opts = self.opts
        for name in opts.get("import", []) or []:
            self._import_module(name, "import")
        callable_name = opts.callable or "application"
        todo = []
        if opts.asgi:
            todo.append(("", opts.asgi, "asgi"))
        if opts.cffi_wsgi:
            todo.append(("", opts.cffi_wsgi, "auto"))
        if opts.module:
            todo.append(("", opts.module, "auto"))
        if opts.wsgi_file:
            todo.append(("", opts.wsgi_file, "file"))
        for item in opts.mount:
            mountpoint, sep, spec = item.partition("=")
            if not sep or not spec:
                raise AppLoadError(f"--mount {item}: expected MOUNTPOINT=APP")
            todo.append((mountpoint, spec, "auto"))
        for mountpoint, spec, kind in todo:
            try:
                self.apps.load(mountpoint, spec, callable_name, kind)
            except AppLoadError as e:
                if opts.need_app:
                    raise           # the server prints it and exits 22
                log(f"*** {e} (mountpoint='{mountpoint}'): skipped, --need-app is off ***")
        if todo and not self.apps:
            log("*** no Python app loaded ***")
        self.asgi_apps = [a.asgi for a in self.apps.apps if a.asgi is not None]
        only = self.apps.apps[0].asgi if len(self.apps.apps) == 1 else None
        self._asgi_only = None if self.apps.manage_script_name or self.apps.vhost else only
        if opts.get("python-raw"):
            from .raw_tcp import RawHandler
            self.raw = RawHandler.load(opts.get("python-raw"), callable_name, bool(opts.get("greenlet")))

    def has_raw(self) -> bool:
        return self.raw is not None

    def raw_request(self, req):
        return self.raw.serve(req)

    def _check_asgi(self) -> None:
        """ASGI apps run on one asyncio loop per worker, as many requests at once as it has
        cores: refused without --async N and with --threads (one line each)."""
        if not self.asgi_apps:
            return
        is_set = getattr(self.opts, "is_set", None)
        if is_set is not None and not is_set("async"):
            raise OptionValueError(f"{self.asgi_apps[0].name} is an ASGI app: give --async N, the requests "
                                   f"a worker serves at once (e.g. --async 100; uWSGI's --asyncio N sets it too)")
        if int(self.opts.threads or 1) > 1:
            raise OptionValueError("--threads: ASGI apps run on one asyncio loop per worker and cannot be "
                                   "served by several threads; use --processes N (and --async N cores)")
        if int(getattr(self.opts, "gevent", 0) or 0) > 0:
            # the asyncio loop is driven by the worker's loop, whose turns gevent's hub paces
            raise OptionValueError(f"--gevent: {self.asgi_apps[0].name} is an ASGI app, served by asyncio "
                                   f"(--async N), not by gevent's hub; run it without --gevent (WSGI apps "
                                   f"that need gevent in an instance of their own)")

    # ---- the hot path -----------------------------------------------------------------------

    def request(self, req):
        only = self._asgi_only
        if only is not None:        # one ASGI app: no environ to build
            rec = only.record
            rec.requests += 1
            req.app_id = rec.id
            v = req.vars
            return only.request(req, v.get(b"SCRIPT_NAME", b"").decode("latin-1").rstrip("/"),
                                v.get(b"PATH_INFO", b"").decode("latin-1"))
        if self.apps is None:       # no Python option given: nothing set up, no app
            req.start_response(b"503 Service Unavailable", [(b"Content-Type", b"text/plain")])
            req.write(b"503 Service Unavailable: no Python app loaded\n")
            return None
        env = build_environ(req, self.base_environ)
        if req.ctx is not None:
            env["uwsgi.ctx"] = req.ctx      # a code hook's per-request dict (hooks.py)
        app = self.apps.select(env)
        if app is None:
            req.start_response(b"503 Service Unavailable", [(b"Content-Type", b"text/plain")])
            req.write(b"503 Service Unavailable: no Python app loaded\n")
            return None
        app.requests += 1
        req.app_id = app.id         # the request log's "app: N"
        if app.asgi is not None:
            return app.asgi.request(req, env["SCRIPT_NAME"], env["PATH_INFO"])
        return Response(req, app).run(app.callable, env)

    # ---- the native lane (uwsgid/server/native_lane.py) ---------------------------------------

    def lane_app(self, core):
        """The native lane's way to the one WSGI or ASGI app (uwsgid.plugins.contract.LaneApp; an
        ASGI app's: asgi_lane.py), or None when every request needs request(): several apps or a
        selection by path or host, the greenlet engine, code hooks (their ctx), or no app."""
        if self._asgi_only is not None:
            from .asgi import _drivers
            from .asgi_lane import lane_app
            return lane_app(self._asgi_only, core, _drivers)
        apps = self.apps
        if apps is None or len(apps.apps) != 1 or apps.manage_script_name or apps.vhost:
            return None
        from uwsgid.plugins import code

        from .response import Response as PlainResponse
        from .response import ResponseError, check_headers, check_status
        app = apps.apps[0]
        if app.asgi is not None or Response is not PlainResponse or code.WANTED:
            return None

        def check(status, headers):
            return check_status(status), check_headers(headers)

        def count(n):
            app.requests += n

        def resume(req, env, status, headers, written, result, exc, start_response):
            app.requests += 1
            req.app_id = app.id
            return Response(req, app).resume(env, status, headers, written, result, exc, start_response)

        from uwsgid.plugins import api
        modifier1 = self.modifier1

        def fail(exc, environ, closing):
            # the lane sent the whole body: the error is logged as Response._close (closing) or
            # the core's _fail (a step after the declared length) log it, and counted
            import traceback
            app.exceptions += 1
            text = "".join(traceback.format_exception(exc))
            if closing:
                log("[cffi] error in the response's close()\n" + text)
                return
            current = api.current_core()
            if current is not None and hasattr(current, "exceptions"):
                current.exceptions += 1
            desc = f"{environ.get('REQUEST_METHOD', '')} {environ.get('REQUEST_URI', '')[:200]}"
            log(f"error while serving {desc} (modifier1 {modifier1}):\n{text}")
        return LaneApp(app.callable, self.base_environ, check, ResponseError, None, app.id, count, resume, fail)


plugin = CffiPlugin()
