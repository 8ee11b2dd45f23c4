"""--cffi-eval / --cffi-exec (before fork) and their -post-fork twins: user code run in the
`__main__` namespace, so that names defined by one are seen by the next (and by a REPL)."""

from __future__ import annotations

import sys

from uwsgid.plugins.contract import AppLoadError
from uwsgid.util.log import log

from .loader import user_traceback


def _namespace() -> dict:
    main = sys.modules.get("__main__")
    if main is None:
        import types
        main = types.ModuleType("__main__")
        sys.modules["__main__"] = main
    return main.__dict__


def run_code(code: str, origin: str) -> None:
    try:
        compiled = compile(code, f"<{origin}>", "exec")
        exec(compiled, _namespace())
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as e:
        log(f"[cffi] error in --{origin} {code!r}:\n{user_traceback(e)}")
        raise AppLoadError(f"--{origin} {code!r} failed: {type(e).__name__}: {e}") from e


def run_file(path: str, origin: str) -> None:
    try:
        with open(path, "rb") as f:
            source = f.read()
    except OSError as e:
        raise AppLoadError(f"--{origin} {path}: {e.strerror}") from None
    ns = _namespace()
    saved = ns.get("__file__")
    ns["__file__"] = path
    try:
        exec(compile(source, path, "exec"), ns)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as e:
        log(f"[cffi] error in --{origin} {path}:\n{user_traceback(e)}")
        raise AppLoadError(f"--{origin} {path} failed: {type(e).__name__}: {e}") from e
    finally:
        if saved is None:
            ns.pop("__file__", None)
        else:
            ns["__file__"] = saved
