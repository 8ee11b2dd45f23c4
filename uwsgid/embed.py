"""The Python side of the ./uwsgi executable (core/main.c + cffi's embedding API).

core/main.c starts CPython on the right home (--cffi-home / $UWSGI_CFFI_HOME / the baked
.venv), then calls uwsgi_run(argc, argv); its tiny init code (see uwsgiconfig.EMBED_INIT)
calls `run()` here, which:
  * puts the build's lib dir (build/lib, the standalone _uwsgi) on sys.path, and a non-venv
    home's site-packages;
  * registers the plugins baked into the executable with uwsgid.plugins.loader;
  * runs `uwsgid.main.main(argv[1:])` and turns its outcome into an exit code: an int as is,
    SystemExit into its code, a module the home's Python lacks (httptools in a venv that has
    only cffi) into one line naming it and 1, any other uncaught exception into a traceback and 1.
Inside the executable, `import _uwsgi` gives the embedding module: uwsgi.h's API plus the
executable-only functions (uwsgi_set_proctitle, uwsgi_argc/uwsgi_argv); uwsgid.util.binary
answers the rest of the server's questions about the executable.

This module imports only the standard library when it is imported (the server's modules in
run()), so that the init code can always import it and every failure below is reported here.
core/main.c has checked cffi itself (`_cffi_backend`) before.
"""

from __future__ import annotations

import gc
import importlib
import os
import site
import sys

# pip's name of a module the server imports, where it is not the module's own
PIP_NAMES = {"_cffi_backend": "cffi", "yaml": "PyYAML"}


def _setup_paths(build: dict) -> None:
    lib_dir = build.get("lib_dir")
    if lib_dir and os.path.isdir(lib_dir) and lib_dir not in sys.path:
        sys.path.append(lib_dir)
    # A venv home is activated by site.py (main.c points sys.executable into it); a plain
    # prefix given as home (PYTHONHOME-like) gets its site-packages here.
    home = _home_from_argv(sys.argv) or os.environ.get("UWSGI_CFFI_HOME") or build.get("home")
    if home and not os.path.isfile(os.path.join(home, "pyvenv.cfg")):
        ver = f"python{sys.version_info[0]}.{sys.version_info[1]}"
        sp = os.path.join(home, "lib", ver, "site-packages")
        if os.path.isdir(sp) and sp not in sys.path:
            site.addsitedir(sp)


def _home_from_argv(argv: list[str]) -> str | None:
    home = None
    for i, a in enumerate(argv[1:], 1):
        if a == "--cffi-home" and i + 1 < len(argv):
            home = argv[i + 1]
        elif a.startswith("--cffi-home="):
            home = a.split("=", 1)[1]
    return home


def _register_plugins(ffi, lib, build: dict) -> None:
    from uwsgid.plugins import loader as plugins_loader
    from uwsgid.util import binary
    exe = binary.executable() or "uwsgi"
    for name in build.get("embedded", []):
        table = getattr(lib, f"uwsgi_plugin_{name}_files")()
        source = ffi.string(getattr(lib, f"uwsgi_plugin_{name}_source")()).decode()
        plugins_loader.register_embedded(name, plugins_loader.read_table(ffi, table), origin=exe,
                                         source_dir=source)
    plugins_loader.set_build_dirs(exe_dir=os.path.dirname(exe), plugin_dir=build.get("plugin_dir"))


def _entry_point():
    """uwsgid.main.main, or $UWSGI_EMBED_MAIN=module:function (the build's own tests use it
    to exercise the launcher independently of the server)."""
    spec = os.environ.get("UWSGI_EMBED_MAIN", "uwsgid.main:main")
    mod, _, fn = spec.partition(":")
    return getattr(importlib.import_module(mod), fn or "main")


def exit_code(code) -> int:
    """SystemExit's code as a process exit code (None -> 0, a message -> printed, 1)."""
    if code is None:
        return 0
    if isinstance(code, bool):
        return int(code)
    if isinstance(code, int):
        return code & 0xFF
    sys.stderr.write(f"{code}\n")
    return 1


def missing_module(e: ImportError) -> str | None:
    """The error line for a module the home's Python cannot import at all (not installed, or a
    binary module whose library does not load); None for any other ImportError (a bug: its
    traceback says more)."""
    top = (e.name or "").partition(".")[0]
    if not top or top == "uwsgid":
        return None
    import importlib.util  # an error path (uwsgid.main pre-imports it before --uid/--gid)
    try:
        absent = importlib.util.find_spec(top) is None
    except (ImportError, ValueError):
        absent = True
    if not absent and getattr(e, "path", None) is None:
        return None
    why = "" if absent else f" ({str(e).splitlines()[0]})"
    source = _home_source()
    advice = ("give --cffi-home a virtualenv that has it" if source is None
              else f"point {source} at a virtualenv that has it")
    return (f"uwsgi: the Python at {sys.prefix} ({source or 'the home built into uwsgi'}) cannot import "
            f"{top}{why}: pip install {PIP_NAMES.get(top, top)} in it, or {advice}")


def _home_source() -> str | None:
    """Where the home came from, as core/main.c says it: the option, the variable, else None."""
    if _home_from_argv(sys.argv):
        return "--cffi-home"
    if os.environ.get("UWSGI_CFFI_HOME"):
        return "$UWSGI_CFFI_HOME"
    return None


def run(ffi, lib, argc: int, argv, build: dict) -> int:
    # No cyclic GC while the server starts: its collections would walk every freshly imported
    # module and find nothing to free (~6 ms of a start-up). uwsgid.main turns it back on, and
    # freezes what the start-up made, before the apps load.
    gc.disable()
    try:
        from uwsgid.util import binary
        binary.bind(lib, build)
        args = [os.fsdecode(ffi.string(argv[i])) for i in range(argc)]
        sys.argv = args or ["uwsgi"]
        if args[1:] == ["--version"] and "UWSGI_EMBED_MAIN" not in os.environ:
            # what init scripts and `uwsgi --version` checks run: answered before the server's
            # ~100 modules are imported for their options (the same line cli.informational prints)
            import uwsgid
            sys.stdout.write(uwsgid.__version__ + "\n")
            return 0
        _setup_paths(build)
        _register_plugins(ffi, lib, build)
        rc = _entry_point()(args[1:])
        return exit_code(rc)
    except SystemExit as e:
        return exit_code(e.code)
    except KeyboardInterrupt:
        return 130
    except ImportError as e:
        line = missing_module(e)
        if line is None:
            return _traceback()
        sys.stderr.write(line + "\n")
        return 1
    except BaseException:
        return _traceback()
    finally:
        _flush()


def _traceback() -> int:
    import traceback
    traceback.print_exc()
    return 1


def _flush() -> None:
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except Exception:
            pass
