"""Build contract of the Lua WSAPI plugin (modifier1 6), read by uwsgiconfig.py.

The plugin is Python on lupa (package lua_plugin/, Lua helper code included as data files);
it has no C of its own, so building it bakes the package into the binary or lua_plugin.so."""

NAME = "lua"
CFLAGS = []
LDFLAGS = []
LIBS = []
GCC_LIST = []
REQUIRES = [("lupa", "pip install lupa (or run make venv)")]
