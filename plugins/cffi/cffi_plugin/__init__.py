"""The Python WSGI plugin (modifier1 0), uWSGI's "cffi" plugin: runs on the CPython that
./uwsgi embeds. Modules by concern: options, loader (apps), environ, wsgi_input, response,
uwsgi_module (the `uwsgi` module), evalexec (--cffi-eval/--cffi-exec), autoreload.

A --cffi-init module may change how requests are served by patching `cffi_plugin.plugin`
(e.g. wrap plugin.request) or replace the worker loop with uwsgid.plugins.api.set_loop(fn)."""

from __future__ import annotations

import importlib
import sys

from uwsgid.plugins.contract import AppLoadError, Plugin
from uwsgid.util.log import log

from . import autoreload, evalexec, uwsgi_module
from .environ import base_defaults, build_environ
from .loader import Apps, add_pythonpath, add_virtualenv, user_traceback
from .options import OPTIONS
from .response import FileWrapper, Response
from .wsgi_input import ErrorStream


class CffiPlugin(Plugin):
    name = "cffi"
    title = "Python (WSGI)"
    modifier1 = 0
    options = OPTIONS

    def __init__(self):
        self.apps = Apps()
        self.opts = None
        self.server = None
        self.module = None          # the `uwsgi` module
        self.base_environ: dict = {}
        self._loaded = False

    # ---- lifecycle --------------------------------------------------------------------------

    def configure(self, opts, server) -> None:
        self.opts = opts
        self.server = server
        self.apps.manage_script_name = bool(opts.manage_script_name)
        self.apps.chdir = opts.chdir or ""
        self.module = uwsgi_module.install(server)
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
        uwsgi_module.refresh_after_fork(self.module)
        opts = self.opts
        if opts is None:
            return
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
        return bool(self.apps.apps)

    def stats_apps(self) -> list[dict]:
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
