"""The Lua WSAPI plugin (modifier1 6) on lupa: `plugin` is what the plugin loader registers.

Modules: options (the --lua-* options, and the Settings they make), engine (which lupa engine,
loaded once), state (a lua_State: paths, shims, loading), the Lua half (output.lua:
print/io.write/os.exit shims; runtime.lua: env, response checks, the body trampoline;
uwsgi_table.lua: the `uwsgi` table), uwsgi_module (the Python functions behind `uwsgi`),
response (one request: status, headers, body driving, errors), plugin (the lifecycle; it imports
state and response only when a Lua app or script is configured)."""

from .plugin import LuaPlugin, run_script

plugin = LuaPlugin()

__all__ = ["plugin", "LuaPlugin", "run_script"]
