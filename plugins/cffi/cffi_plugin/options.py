"""The cffi plugin's options: uWSGI's cffi-* names plus the python plugin spellings that users
already have in their ini files (wsgi-file, module, callable, pythonpath, mount). --cffi-home
is a core option: ./uwsgi reads it before Python starts, whichever plugins the build has."""

from uwsgid.config.options import Option
from uwsgid.plugins import code

code.HOOK_OPTIONS.append("python-hooks")     # routing sets its hook chains up when it is given

O = Option
G = "cffi"

OPTIONS = [
    O("cffi-wsgi", kind="str", group=G, metavar="MODULE[:CALLABLE]",
      help="load a WSGI app from MODULE (callable defaults to --callable)"),
    O("cffi-init", kind="str", multi=True, group=G, metavar="MODULE",
      help="import MODULE at plugin init (it may register hooks or an event loop)"),
    O("cffi-eval", kind="str", multi=True, group=G, metavar="CODE",
      help="run Python CODE before fork"),
    O("cffi-exec", kind="str", multi=True, group=G, metavar="FILE",
      help="run the Python FILE before fork"),
    O("cffi-eval-post-fork", kind="str", multi=True, group=G, metavar="CODE",
      help="run Python CODE in each worker after fork"),
    O("cffi-exec-post-fork", kind="str", multi=True, group=G, metavar="FILE",
      help="run the Python FILE in each worker after fork"),
    O("wsgi-file", kind="str", group=G, aliases=("file",), metavar="FILE",
      help="load a WSGI app from a .py/.wsgi file (its --callable, default 'application')"),
    O("module", "w", kind="str", group=G, aliases=("wsgi",), metavar="MODULE[:CALLABLE]",
      help="load a WSGI app from a module"),
    O("asgi", kind="str", group=G, metavar="MODULE[:CALLABLE]",
      help="load an ASGI app (ASGI 3, or ASGI 2) from MODULE, served on an asyncio loop per worker with "
           "lifespan; a --mount/--module callable that is an ASGI 3 coroutine is served as ASGI too "
           "(needs --async N: the requests a worker serves at once)"),
    O("callable", kind="str", default="application", group=G, metavar="NAME",
      help="name of the WSGI callable in the app module/file"),
    O("pythonpath", kind="str", multi=True, group=G, aliases=("python-path", "pp"), metavar="DIR",
      help="add DIR to sys.path (repeatable; a glob adds every match)"),
    O("mount", kind="str", multi=True, group=G, metavar="MOUNTPOINT=APP",
      help="mount APP (a .py/.wsgi file, a module or module:callable) at MOUNTPOINT"),
    O("home", "H", kind="str", group=G, aliases=("virtualenv", "venv", "pyhome"), metavar="DIR",
      help="make a virtualenv's site-packages importable (--cffi-home picks the interpreter itself)"),
    O("import", kind="str", multi=True, group=G, aliases=("pyimport", "py-import", "python-import"),
      metavar="MODULE", help="import MODULE before loading the apps (e.g. one registering uwsgidecorators timers)"),
    O("pyargv", kind="str", group=G, metavar="ARGS", help="sys.argv for the apps (split like a shell)"),
    O("py-autoreload", kind="int", default=0, group=G, aliases=("python-autoreload",), metavar="SECS",
      help="development: reload the instance when a loaded module's file changes (checked every SECS)"),
    O("python-hooks", kind="str", multi=True, group=G, aliases=("pyhooks",), metavar="MODULE",
      help="import MODULE, whose uwsgi_hooks decorators (@access, @response, @log, @hook(NAME), "
           "@variable(NAME)) run Python code in the request phases, whatever the app's runtime "
           "(docs/ROUTING.md)"),
    O("manage-script-name", kind="flag", group=G,
      help="pick the app by the longest mountpoint prefix of PATH_INFO and rewrite SCRIPT_NAME/PATH_INFO"),
]

# How Python requests run, not a Python app or path: not counted by _wanted() (a Lua-only
# instance given --greenlet does not set the Python side up for it).
ENGINE_OPTIONS = [
    O("greenlet", kind="flag", group=G, aliases=("ugreen",),
      help="enable greenlet as suspend engine: under --async N each Python request runs in a greenlet, "
           "and uwsgi.async_sleep/wait_fd_read/wait_fd_write/suspend/websocket_recv switch cores inside "
           "the call (needs the greenlet package)"),
    O("greenlet-cooperative", kind="flag", group=G, aliases=("greenlet-monkey-patch",),
      help="with --greenlet: make time.sleep, socket.socket (and ssl over it), socket.getaddrinfo/"
           "gethostbyname and select.select wait on the worker's loop inside a request, suspending "
           "only its core (patched in each worker after fork)"),
    O("gevent", kind="int", default=0, group=G, metavar="N",
      help="a shortcut enabling gevent loop engine with the specified number of async cores and optimal "
           "parameters: each Python request runs in a greenlet on gevent's hub (needs the gevent package)"),
    O("gevent-monkey-patch", kind="flag", group=G,
      help="call gevent.monkey.patch_all() automatically on startup (in each worker, before it serves)"),
    O("gevent-early-monkey-patch", kind="flag", group=G,
      help="call gevent.monkey.patch_all() automatically before app loading"),
    O("gevent-wait-for-hub", kind="flag", group=G,
      help="wait for gevent hub's death instead of the control greenlet (a stopping worker waits for "
           "the app's own greenlets, up to --worker-reload-mercy)"),
]
