"""Loading lupa's Lua engine: one engine per process, imported explicitly with RTLD_GLOBAL.

Plain `import lupa` would pick Lua 5.5 (which cannot load Debian's 5.1 modules), and a second
engine loaded in the same process binds to the first one's symbols and can crash: so the
engine is chosen once, by name, and asking for another one later is an error."""

from __future__ import annotations

import _thread
import importlib

from .options import ENGINES

_lock = _thread.allocate_lock()   # threading.Lock, without importing threading for --version
_loaded: tuple[str, object] | None = None


class EngineError(Exception):
    pass


def canonical(name: str) -> str:
    try:
        return ENGINES[name.strip().lower()]
    except KeyError:
        raise EngineError(f"--lua-engine {name!r}: unknown engine (choose one of "
                          f"{', '.join(sorted(ENGINES))})") from None


def load(name: str):
    """The lupa engine module (lupa.luajit21, lupa.lua51, ...) for `name`."""
    global _loaded
    mod_name = canonical(name)
    with _lock:
        if _loaded is not None:
            if _loaded[0] != mod_name:
                raise EngineError(f"--lua-engine {name}: this process already runs lupa.{_loaded[0]}; "
                                  "one Lua engine per process")
            return _loaded[1]
        try:
            import lupa
        except ImportError as exc:
            raise EngineError(f"lupa is not installed ({exc}): pip install lupa") from None
        try:
            # RTLD_GLOBAL, so that Debian's Lua C modules (lsqlite3, md5, lfs...) resolve the Lua API.
            with lupa.allow_lua_module_loading():
                mod = importlib.import_module(f"lupa.{mod_name}")
        except ImportError as exc:
            raise EngineError(f"--lua-engine {name}: lupa has no {mod_name} engine here ({exc})") from None
        _loaded = (mod_name, mod)
        return mod
