"""Build contract of the Lua WSAPI plugin (modifier1 6), read by uwsgiconfig.py.

The plugin is Python on lupa (package lua_plugin/, Lua helper code included as data files),
baked into the binary or lua_plugin.so. Its C module uwsgi.native (uwsgi_native.c: the WSAPI
env, the header walk and the `uwsgi` functions that need no Python) is not linked into either:
it is a Lua C module that each lua_State loads with package.loadlib, built once per Lua ABI that
lupa's engines have (lua_abi.h), into build/lib. Without it the plugin runs its Lua fallback."""

NAME = "lua"
CFLAGS = []
LDFLAGS = []
LIBS = []
GCC_LIST = []
REQUIRES = [("lupa", "pip install lupa (or run make venv)")]

# C modules the plugin dlopen()s at run time: (name, sources, extra cflags, header deps),
# built as build/lib/NAME.so by uwsgiconfig.py (build_shared_modules). The lua_* symbols stay
# undefined: the lupa engine of the process provides them (loaded RTLD_GLOBAL by engine.py).
SHARED_MODULES = [
    ("uwsgi_lua_native501", ["uwsgi_native.c"], ["-DULUA_ABI=501"], ["lua_abi.h"]),   # LuaJIT, Lua 5.1
    ("uwsgi_lua_native504", ["uwsgi_native.c"], ["-DULUA_ABI=504"], ["lua_abi.h"]),   # Lua 5.4
]
