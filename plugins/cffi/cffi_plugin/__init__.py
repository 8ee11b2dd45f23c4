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

from uwsgid.plugins.contract import AppLoadError, OptionValueError, Plugin
from uwsgid.util.log import log

from .options import ENGINE_OPTIONS, OPTIONS

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
    return any(is_set(o.name) for o in OPTIONS)


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


class CffiPlugin(Plugin):
    name = "cffi"
    title = "Python (WSGI)"
    modifier1 = 0
    options = OPTIONS + ENGINE_OPTIONS

    def __init__(self):
        self.apps = None            # an Apps once set up
        self.opts = None
        self.server = None
        self.module = None          # the `uwsgi` module
        self.base_environ: dict = {}
        self._loaded = False

    # ---- lifecycle --------------------------------------------------------------------------

    def configure(self, opts, server) -> None:
        self.opts = opts
        self.server = server
        engine = _suspend_engine(opts)
        if _wanted(opts):
            self.setup()
            if engine is not None:
                global Response
                Response = engine       # request() builds GreenResponses from now on

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

    def post_fork(self, worker) -> None:
        opts = self.opts
        if opts is None or self.apps is None:
            return
        uwsgi_module.refresh_after_fork(self.module)
        if (opts.lazy_apps or opts.lazy) and not self._loaded:
            self.load_apps()
        for code in opts.cffi_eval_post_fork:
            evalexec.run_code(code, "cffi-eval-post-fork")
        for path in opts.cffi_exec_post_fork:
            evalexec.run_file(path, "cffi-exec-post-fork")
        if opts.py_autoreload and opts.py_autoreload > 0:
            autoreload.start(opts.py_autoreload)
        hook = getattr(self.module, "post_fork_hook", None)
        if callable(hook):
            try:
                hook()
            except Exception:
                import traceback
                log("[cffi] error in uwsgi.post_fork_hook():\n" + traceback.format_exc())

    def has_app(self) -> bool:
        return self.apps is not None and bool(self.apps.apps)

    def stats_apps(self) -> list[dict]:
        if self.apps is None:
            return []
        return [{"id": a.id, "modifier1": self.modifier1, "mountpoint": a.mountpoint,
                 "startup_time": int(a.startup_time), "requests": a.requests,
                 "exceptions": a.exceptions, "chdir": a.chdir} for a in self.apps.apps]

    def shutdown(self) -> None:
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

    # ---- the hot path -----------------------------------------------------------------------

    def request(self, req):
        if self.apps is None:       # no Python option given: nothing set up, no app
            req.start_response(b"503 Service Unavailable", [(b"Content-Type", b"text/plain")])
            req.write(b"503 Service Unavailable: no Python app loaded\n")
            return None
        env = build_environ(req, self.base_environ)
        app = self.apps.select(env)
        if app is None:
            req.start_response(b"503 Service Unavailable", [(b"Content-Type", b"text/plain")])
            req.write(b"503 Service Unavailable: no Python app loaded\n")
            return None
        app.requests += 1
        req.app_id = app.id         # the request log's "app: N"
        return Response(req, app).run(app.callable, env)


plugin = CffiPlugin()
