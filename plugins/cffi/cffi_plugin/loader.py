"""Loading WSGI apps (--cffi-wsgi, --module/-w, --wsgi-file, --mount) and choosing the app for
a request (SCRIPT_NAME / UWSGI_APPID, or the longest mountpoint with --manage-script-name)."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import re
import sys
import time

from uwsgid.plugins.contract import AppLoadError
from uwsgid.util.log import log


class App:
    __slots__ = ("id", "mountpoint", "callable", "source", "startup_time", "requests", "exceptions", "chdir",
                 "asgi")

    def __init__(self, id_: int, mountpoint: str, app, source: str, startup_time: float, chdir: str = ""):
        self.id = id_
        self.mountpoint = mountpoint
        self.callable = app
        self.source = source
        self.startup_time = startup_time      # seconds the app took to load (uWSGI's stats field)
        self.requests = 0
        self.exceptions = 0
        self.chdir = chdir
        self.asgi = None        # an ASGI app: its cffi_plugin.asgi.AsgiApp (set by Apps.asgi_adapter)


def add_pythonpath(entries) -> None:
    """--pythonpath DIR (globs expand) and PYTHONPATH: put first on sys.path, options first."""
    env_pp = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    for p in reversed(env_pp):
        if p not in sys.path:
            sys.path.insert(0, p)
    for entry in reversed(list(entries)):
        if any(c in entry for c in "*?["):   # glob.has_magic, without importing glob for nothing
            import glob
            matches = sorted(glob.glob(entry))
        else:
            matches = [entry]
        for p in reversed(matches):
            if p in sys.path:
                sys.path.remove(p)
            sys.path.insert(0, p)
            log(f"added {p}/ to pythonpath.")
    # Like uWSGI and gunicorn: modules beside the working directory are importable.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, "")


def add_virtualenv(home: str) -> None:
    """--home/--virtualenv: the venv's site-packages (and its .pth files) become importable."""
    ver = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    site_dir = os.path.join(home, "lib", ver, "site-packages")
    if not os.path.isdir(site_dir):
        log(f"!!! --home {home}: no lib/{ver}/site-packages there (a virtualenv for another Python?) !!!")
        return
    import site
    before = list(sys.path)
    site.addsitedir(site_dir)
    # the virtualenv's packages win over the interpreter's own, as with PYTHONHOME
    sys.path[:] = [p for p in sys.path if p not in before] + before
    log(f"Set PythonHome to {home}")


_OUR_DIR = os.path.dirname(os.path.abspath(__file__))


def user_traceback(exc: BaseException) -> str:
    """The traceback of an app's own error, without our loader's and importlib's frames."""
    tb = exc.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if not (name.startswith(_OUR_DIR) or name.startswith("<frozen importlib")):
            break
        tb = tb.tb_next
    import traceback  # error paths only: linecache/tokenize/textwrap stay out of the workers
    return "".join(traceback.format_exception(type(exc), exc, tb))


def is_asgi(obj) -> bool:
    """An ASGI 3 callable: a coroutine function, or an object whose __call__ is one (Starlette,
    FastAPI, Django's ASGIHandler). A WSGI callable never is; a class never counts."""
    if isinstance(obj, type):
        return False
    return _coroutine_function(obj) or _coroutine_function(getattr(obj, "__call__", None))  # noqa: B004


_CO_COROUTINE = 0x80    # inspect.CO_COROUTINE, without importing inspect into every worker


def _coroutine_function(f) -> bool:
    f = getattr(f, "__func__", f)       # a bound method: its function
    code = getattr(f, "__code__", None)
    return code is not None and bool(code.co_flags & _CO_COROUTINE)


def _file_module_name(path: str) -> str:
    return "uwsgi_file_" + re.sub(r"\W", "_", path)


def load_file(path: str, callable_name: str):
    full = os.path.abspath(path)
    if not os.path.isfile(full):
        raise AppLoadError(f"unable to load app file {path}: no such file")
    name = _file_module_name(full)
    # SourceFileLoader explicitly: a .wsgi suffix is not a known Python source suffix.
    loader = importlib.machinery.SourceFileLoader(name, full)
    spec = importlib.util.spec_from_file_location(name, full, loader=loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return _get_callable(module, callable_name, path)


def load_module(spec: str, callable_name: str):
    modname, sep, attr = spec.partition(":")
    if not modname:
        raise AppLoadError(f"invalid app module {spec!r}: expected MODULE[:CALLABLE]")
    module = importlib.import_module(modname)
    return _get_callable(module, attr or callable_name, spec)


def _get_callable(module, name: str, what: str):
    obj = module
    for part in name.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise AppLoadError(f"unable to find the callable {name!r} in {what}")
    if not callable(obj):
        raise AppLoadError(f"{name!r} in {what} is not callable ({type(obj).__name__})")
    return obj


def is_file_spec(app: str) -> bool:
    """A path (has a slash, names an existing file, or ends with .py) rather than a module.
    "mysite.wsgi" is Django's usual module name, so .wsgi counts only for existing files."""
    return os.sep in app or os.path.isfile(app) or app.endswith(".py")


def load_spec(app: str, callable_name: str):
    """APP of --mount / --module: a .py/.wsgi file, pkg.mod or pkg.mod:callable."""
    if is_file_spec(app):
        return load_file(app, callable_name)
    return load_module(app, callable_name)


def normalize_mountpoint(mp: str) -> str:
    # "/" and "" are the root; "/app/" is "/app" (SCRIPT_NAME never ends with a slash).
    return mp.rstrip("/") if mp.startswith("/") else mp


class Apps:
    """The apps of this process, in load order; the first is the default."""

    def __init__(self):
        self.apps: list[App] = []
        self.by_mountpoint: dict[str, App] = {}
        self.manage_script_name = False
        self.vhost = False          # --vhost: the app mounted at HOST|SCRIPT_NAME, as uWSGI
        self.chdir = ""             # --chdir, reported in the stats
        # set by the plugin: adapter(app, record, spec, forced) -> the ASGI 3 callable, after it
        # set record.asgi; called for --asgi (forced) and for callables that are ASGI 3
        self.asgi_adapter = None
        # (mountpoint, app), longest first, for --manage-script-name
        self._prefixes: list[tuple[str, App]] = []

    def __bool__(self) -> bool:
        return bool(self.apps)

    @property
    def default(self) -> App | None:
        return self.apps[0] if self.apps else None

    def load(self, mountpoint: str, spec: str, callable_name: str, kind: str) -> App:
        """kind: 'file' (--wsgi-file), 'auto' (--module, --mount: a file path or a module; an
        ASGI 3 callable is served as ASGI) or 'asgi' (--asgi). Raises AppLoadError, one line."""
        mountpoint = normalize_mountpoint(mountpoint)
        t0 = time.monotonic()
        try:
            if kind == "file":
                app = load_file(spec, callable_name)
            else:
                app = load_spec(spec, callable_name)
        except AppLoadError:
            raise
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                raise
            log(f"unable to load app {spec} (mountpoint='{mountpoint}'):\n{user_traceback(e)}")
            raise AppLoadError(f"unable to load app {spec}: {type(e).__name__}: {e}") from e
        rec = App(len(self.apps), mountpoint, app, spec, time.monotonic() - t0, self.chdir)
        if kind == "asgi" or is_asgi(app):
            if self.asgi_adapter is None:
                raise AppLoadError(f"{spec}: an ASGI app, and ASGI is not available here")
            rec.callable = self.asgi_adapter(app, rec, spec, kind == "asgi")
        self.apps.append(rec)
        self.by_mountpoint.setdefault(mountpoint, rec)
        self._prefixes = sorted(((a.mountpoint, a) for a in self.apps if a.mountpoint),
                                key=lambda x: len(x[0]), reverse=True)
        log(f"{'ASGI' if rec.asgi is not None else 'WSGI'} app {rec.id} (mountpoint='{mountpoint}') ready in "
            f"{int(time.monotonic() - t0)} seconds on interpreter {hex(id(sys.modules['__main__']))} "
            f"pid: {os.getpid()}" + (" (default app)" if rec.id == 0 else ""))
        return rec

    def select(self, env: dict) -> App | None:
        """The app for this environ; with --manage-script-name rewrites SCRIPT_NAME/PATH_INFO."""
        apps = self.apps
        if len(apps) == 1 and not self.manage_script_name and not self.vhost:
            return apps[0]
        appid = env.get("UWSGI_APPID")
        if appid is not None:
            app = self.by_mountpoint.get(normalize_mountpoint(appid))
            if app is not None:
                return app
        elif self.vhost:
            return self._select_vhost(env)
        if self.manage_script_name:
            path = env.get("PATH_INFO", "")
            for mp, app in self._prefixes:
                if path.startswith(mp) and (len(path) == len(mp) or path[len(mp)] == "/"):
                    env["SCRIPT_NAME"] = mp
                    env["PATH_INFO"] = path[len(mp):]
                    return app
        app = self.by_mountpoint.get(env.get("SCRIPT_NAME", ""))
        return app if app is not None else self.default

    def _select_vhost(self, env: dict) -> App | None:
        """uWSGI's vhost key: the Host header (else SERVER_NAME), "|", SCRIPT_NAME (after
        --manage-script-name's rewrite), matched exactly against the mountpoints (--mount
        'example.com|=app.py', 'example.com|/api=api.py'), else the default app. The key is
        also the request's UWSGI_APPID."""
        if self.manage_script_name:
            path = env.get("PATH_INFO", "")
            for mp, _ in self._prefixes:
                if path.startswith(mp) and (len(path) == len(mp) or path[len(mp)] == "/"):
                    env["SCRIPT_NAME"] = mp
                    env["PATH_INFO"] = path[len(mp):]
                    break
        key = env["UWSGI_APPID"] = (env.get("HTTP_HOST") or env.get("SERVER_NAME", "")) + "|" + \
            env.get("SCRIPT_NAME", "")
        app = self.by_mountpoint.get(key)
        return app if app is not None else self.default
