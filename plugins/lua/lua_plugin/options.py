"""The Lua plugin's options (group "lua"), with uWSGI's names where uWSGI has them, and the
`Settings` they make (checked by plugin.settings_from)."""

from __future__ import annotations

from uwsgid.config.options import Option
from uwsgid.plugins import code

code.HOOK_OPTIONS.append("lua-hooks")     # routing sets its hook chains up when it is given

# lupa engine modules by the names --lua-engine accepts.
ENGINES = {
    "luajit": "luajit21",
    "luajit21": "luajit21",
    "luajit20": "luajit20",
    "lua51": "lua51",
    "lua52": "lua52",
    "lua53": "lua53",
    "lua54": "lua54",
    "lua55": "lua55",
}
DEFAULT_ENGINE = "luajit21"

O = Option
OPTIONS = [
    O("lua", kind="str", group="lua", metavar="FILE",
      help="load a Lua WSAPI app (.lua, .luac or .ws file returning a function or a table with run)"),
    O("lua-load", kind="str", multi=True, group="lua", metavar="FILE",
      help="run a Lua file in every lua_State before the app"),
    O("lua-postload", kind="str", multi=True, group="lua", metavar="FILE",
      help="run a Lua file in every lua_State after the app"),
    O("lua-postfork-worker", kind="str", multi=True, group="lua", metavar="FILE",
      help="run a Lua file in every worker lua_State after fork (not in the master's load check)"),
    O("lua-shell", kind="flag", group="lua", aliases=("luashell",),
      help="run the Lua interactive shell (debug.debug()) on worker 1's stdin before it serves"),
    O("lua-gc-freq", kind="int", default=1, group="lua", metavar="N",
      help="run the Lua GC after every N requests on a lua_State (1 = every request, 0 = never)"),
    O("lua-gc-full", kind="flag", group="lua",
      help="run a full GC cycle instead of an incremental step"),
    O("lua-engine", kind="str", default=DEFAULT_ENGINE, group="lua", metavar="NAME",
      help="lupa engine: luajit (= luajit21), luajit20, lua51, lua52, lua53, lua54 or lua55"),
    O("lua-path", kind="str", multi=True, group="lua", metavar="PATH",
      help="prepend to package.path (a directory, or a pattern with ?)"),
    O("lua-cpath", kind="str", multi=True, group="lua", metavar="PATH",
      help="prepend to package.cpath (a directory, or a pattern with ?)"),
    O("lua-hooks", kind="str", multi=True, group="lua", metavar="FILE",
      help="a Lua file returning a table of hooks (access, response, log, hooks = {NAME = f}, vars = "
           "{NAME = f}) run in the request phases, whatever the app's runtime (docs/ROUTING.md)"),
    O("lua-max-memory", kind="int", default=0, group="lua", metavar="MB",
      help="cap each lua_State's memory at MB megabytes (0 = no cap); over it the request gets a 500"),
]


class Settings:
    """What the plugin's options say, checked once in configure(). A plain class, not a
    dataclass: `dataclasses` costs every worker ~1.5 MB (it imports inspect, ast...)."""

    def __init__(self, app: str | None = None, load: list[str] | None = None,
                 postload: list[str] | None = None, postfork: list[str] | None = None,
                 engine: str = "luajit21", max_memory: int = 0, path: list[str] | None = None,
                 cpath: list[str] | None = None, gc_freq: int = 1, gc_full: bool = False,
                 shell: bool = False, slice_size: int = 32768, slice_time: float = 0.02):
        self.app = app
        self.load = [] if load is None else load
        self.postload = [] if postload is None else postload
        self.postfork = [] if postfork is None else postfork
        self.engine = engine
        self.max_memory = max_memory          # bytes, 0 = no cap
        self.path = [] if path is None else path
        self.cpath = [] if cpath is None else cpath
        self.gc_freq = gc_freq
        self.gc_full = gc_full
        self.shell = shell
        self.slice_size = slice_size
        self.slice_time = slice_time

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None

    def __repr__(self) -> str:
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items()) + ")"
