"""What a lua_State weighs (issue 20), in process: its Lua heap after loading, the cosocket code
loaded only by the first uwsgi.tcp(), and the default GC completing a cycle every FULL_EVERY-th
run (a state's pages stay compact, so fewer of them become private in a worker). The server-level
figures (private memory per thread) are in test_lua_memory.py and bench/memory.py."""

from __future__ import annotations

import pytest
from lua_helpers import EXAMPLES, FakeCore, FakeRequest, run_request

import uwsgid.config.core_options  # noqa: F401  (declares the core options)
from lua_plugin import engine, state
from lua_plugin.options import Settings
from lua_plugin.plugin import LuaPlugin
from uwsgid.config import options as uopts

for _opt in LuaPlugin.options:
    try:
        uopts.declare(_opt)
    except ValueError:
        pass

PIPPO = str(EXAMPLES / "pippo.lua")
# The plugin's own Lua objects in a state on top of a bare lupa runtime (its standard libraries):
# ~50 KB on LuaJIT today (runtime.lua, uwsgi_table.lua, output.lua and what they build). Loading
# the cosocket code with every state made it ~150.
OWN_HEAP_BOUND_KB = 70


def _count_kb(rt) -> float:
    return rt.eval("(function() collectgarbage('collect') return collectgarbage('count') end)()")


def _loaded_state(**kw) -> state.LuaState:
    st = state.LuaState(Settings(app=PIPPO, **kw), check=True)
    st.load_all(worker=False)
    return st


def test_a_state_carries_little_beyond_lua_itself():
    st = _loaded_state()
    bare = engine.load(st.settings.engine).LuaRuntime(encoding=None)
    own = _count_kb(st.rt) - _count_kb(bare)
    assert 0 < own < OWN_HEAP_BOUND_KB, f"the plugin's Lua objects weigh {own:.0f} KB a state"


def test_cosocket_code_loads_at_the_first_tcp_call():
    st = _loaded_state()
    tcp = st.rt.eval("function() local s = uwsgi.tcp() s:settimeout(10) return s:close() end")
    before = _count_kb(st.rt)
    tcp()
    first = _count_kb(st.rt)
    tcp()
    second = _count_kb(st.rt)
    assert first - before > 5, "uwsgi.tcp()'s code was already in the state before its first call"
    assert abs(second - first) < 2, "the cosocket code is loaded again at each call"


class _Opts(dict):
    def get(self, k, d=None):
        return dict.get(self, k, d)


def _plugin(app, **opts) -> LuaPlugin:
    p = LuaPlugin()
    p.configure(_Opts({"lua": app, **opts}), None)
    return p


GARBAGE_APP = """
return function(env)
  local junk = {}
  for i = 1, 300 do junk[i] = {i, tostring(i)} end
  return 200, {}, "ok"
end
"""


def _heap_per_run(tmp_path) -> tuple[float, list[float]]:
    """GARBAGE_APP's state: its live heap (KB) after a full collection, then its heap after
    each of 3 * FULL_EVERY requests."""
    app = tmp_path / "garbage.lua"
    app.write_text(GARBAGE_APP)
    p = _plugin(str(app))
    core = FakeCore()
    p.init_core(core)
    st = core.state["lua"]
    live = _count_kb(st.rt)
    counts = []
    for _ in range(3 * state.FULL_EVERY):
        assert run_request(p, core, FakeRequest(core)).status == b"200 OK"
        counts.append(st.rt.eval("collectgarbage('count')"))
    return live, counts


def test_the_default_gc_completes_a_cycle_every_full_every_runs(tmp_path):
    live, counts = _heap_per_run(tmp_path)
    # each request leaves ~25 KB of garbage: steps alone let it pile up between cycles; every
    # FULL_EVERY-th run frees it all at once
    ends = counts[state.FULL_EVERY - 1::state.FULL_EVERY]
    assert max(counts) > live + 20
    assert all(c < live + 8 for c in ends), (live, counts)


@pytest.mark.parametrize("full", [False, True])
def test_gc_runs_count_every_run_whatever_its_kind(tmp_path, full):
    app = tmp_path / "garbage.lua"
    app.write_text(GARBAGE_APP)
    p = _plugin(str(app), **({"lua-gc-full": True} if full else {}))
    core = FakeCore()
    p.init_core(core)
    st = core.state["lua"]
    before = st.gc_runs
    for _ in range(state.FULL_EVERY + 1):
        run_request(p, core, FakeRequest(core))
    assert st.gc_runs - before == state.FULL_EVERY + 1


def test_a_large_heap_keeps_to_steps(tmp_path, monkeypatch):
    """A state over FULL_UNDER_KB (a large app) is not fully collected every FULL_EVERY runs: its
    cost grows with the live heap, and its pages are written anyway."""
    monkeypatch.setattr(state, "FULL_UNDER_KB", 1)     # every heap is "large"
    live, counts = _heap_per_run(tmp_path)
    ends = counts[state.FULL_EVERY - 1::state.FULL_EVERY]
    assert any(c > live + 8 for c in ends), (live, counts)     # garbage left at a cycle's end
