-- The `uwsgi` module (the global `uwsgi`, and require "uwsgi"). Run last of the plugin's three
-- Lua files in every lua_State (state.py; see runtime.lua's header). It is built on the Python
-- functions of uwsgi_module.py, called by name through py.api_call (py.api_names lists them),
-- each lifted so that a Python exception becomes a Lua error naming the function; the Lua side adds conf's numbers, the async waits, the table forms
-- of the cache calls and the RPC / signal registries.
-- From runtime.lua, through `shared`: arm_wait() (the waits' flag for the body trampoline),
-- start_response and add_headers (the request's response extras), XPCALL_ARGS.
-- Returns the registries' entry points, which Python calls by name / number:
--   call_rpc(name, ...)   -> true, result as a string ("" for nil) | false, error
--   call_signal(signum)   -> true | false, error
--   set_ids(wid, sid)     uwsgi.mywid / uwsgi.mysid of a state the master made before fork
local py, conf, shared = ...

local type, tostring, pairs, select, pcall, xpcall, error = type, tostring, pairs, select, pcall, xpcall, error
local unpack = unpack or table.unpack
local traceback = debug.traceback

local uwsgi = {}

-- A Python exception in an API call becomes a plain Lua error message naming the function.
local api_call = py.api_call
local function lift(name)
  local function check(ok, ...)
    if ok then return ... end
    error("uwsgi." .. name .. ": " .. tostring((...)), 0)
  end
  return function(...) return check(pcall(api_call, name, ...)) end
end
if py.native then lift = function(name) return py.native.lift(name, api_call) end end   -- in C: smaller
for _, name in ipairs(py.api_names) do uwsgi[name] = lift(name) end
-- the functions that need no Python service are C functions of uwsgi.native when it loaded
if py.native then for k, f in pairs(py.native.api) do uwsgi[k] = f end end
uwsgi.version = conf.version
uwsgi.mywid = conf.mywid
uwsgi.mysid = conf.mysid
uwsgi.numproc = conf.numproc

-- ---- async waits --------------------------------------------------------------------
-- Each arms a wait in Python, then the trampoline's flag: the body's next yield (even nil)
-- suspends the core until the wait fires.
local arm_wait = shared.arm_wait
local py_sleep, py_wait_read, py_wait_write = uwsgi.async_sleep, uwsgi.wait_fd_read, uwsgi.wait_fd_write
function uwsgi.async_sleep(seconds)
  if seconds == nil then return nil end
  py_sleep(seconds)
  arm_wait()
  return nil
end
function uwsgi.wait_fd_read(fd, timeout)
  if fd == nil then return nil end
  py_wait_read(fd, timeout or 0)
  arm_wait()
  return nil
end
function uwsgi.wait_fd_write(fd, timeout)
  if fd == nil then return nil end
  py_wait_write(fd, timeout or 0)
  arm_wait()
  return nil
end

-- ---- websockets: under --async, a receive inside the body's coroutine waits without holding
-- the worker: it arms a read wait on the connection and yields to the trampoline, so the
-- other cores run (elsewhere, and without --async, it waits in place, as uWSGI's).
local loop_cores = py.loop_cores
local py_ws_recv, py_ws_recv_nb = uwsgi.websocket_recv, uwsgi.websocket_recv_nb
local co_running, co_yield = coroutine.running, coroutine.yield
function uwsgi.websocket_recv()
  local co, main = co_running()
  if co == nil or main or loop_cores() < 2 then return py_ws_recv() end
  while true do
    local msg = py_ws_recv_nb()
    if msg ~= "" then return msg end
    uwsgi.wait_fd_read(uwsgi.connection_fd(), 1)
    co_yield()
  end
end

-- ---- cosockets: uwsgi.tcp() (cosocket.lua over cosocket.py's operations; README "Cosockets")
-- Loaded at the first uwsgi.tcp() of the state, not with the state: its code and the FFI back
-- end weigh ~100 KB of a state's heap (LuaJIT), which an app without cosockets never pays.
do
  local cosocket, tcp = py.cosocket, nil
  uwsgi.cosocket = nil
  uwsgi.tcp = function(...)
    if tcp == nil then
      local code, ops = cosocket()
      tcp = assert((loadstring or load)(code, "@lua_plugin/cosocket.lua"))(ops, uwsgi, shared.slot_calls, shared.arm_wait, shared.at_turn_end)
    end
    return tcp(...)
  end
end

-- ---- cache: table forms ---------------------------------------------------------------
-- Unrolled here so that no Lua table reaches Python (#84): cache_get({k1, k2}) ->
-- {k1 = v1, k2 = v2}; cache_set({k = v}, expires, cache) -> true, or nil and the array of keys
-- that could not be stored; cache_del/cache_exists({k1, k2}).
local function each_key_op(op)
  return function(keys, ...)
    if type(keys) ~= "table" then return op(keys, ...) end
    local res = {}
    for i = 1, #keys do res[keys[i]] = op(keys[i], ...) end
    return res
  end
end
local function table_set(op)
  return function(k, v, expires, cache)
    if type(k) ~= "table" then return op(k, v, expires, cache) end
    local failed = {}
    for key, val in pairs(k) do
      if not op(key, val, v, expires) then failed[#failed + 1] = key end
    end
    if #failed == 0 then return true end
    return nil, failed
  end
end
if uwsgi.cache_get then
  local get = uwsgi.cache_get
  uwsgi.cache_get = each_key_op(get)
  -- uWSGI's cache_get_multi(cache, k1, k2, ...) -> v1, v2, ...
  function uwsgi.cache_get_multi(cache, ...)
    local n, out = select("#", ...), {}
    for i = 1, n do out[i] = get((select(i, ...)), cache) end
    return unpack(out, 1, n)
  end
end
if uwsgi.cache_exists then uwsgi.cache_exists = each_key_op(uwsgi.cache_exists) end
if uwsgi.cache_del then uwsgi.cache_del = each_key_op(uwsgi.cache_del) end
if uwsgi.cache_set then uwsgi.cache_set = table_set(uwsgi.cache_set) end
if uwsgi.cache_update then uwsgi.cache_update = table_set(uwsgi.cache_update) end

-- ---- spooler: uwsgi.spool(table) -> the task file's path; the app sets uwsgi.spooler ----------
uwsgi.SPOOL_OK, uwsgi.SPOOL_RETRY, uwsgi.SPOOL_IGNORE = -2, -1, 0
if uwsgi.spool then
  local py_spool = uwsgi.spool
  function uwsgi.spool(args)
    if type(args) ~= "table" then error("uwsgi.spool(table): the task must be a table", 2) end
    local flat = {}      -- unrolled: no Lua table reaches Python (#84)
    for k, v in pairs(args) do
      local tk, tv = type(k), type(v)
      if (tk ~= "string" and tk ~= "number") or (tv ~= "string" and tv ~= "number") then
        error("uwsgi.spool: keys and values must be strings or numbers (" .. tostring(k) .. ")", 2)
      end
      flat[#flat + 1] = k
      flat[#flat + 1] = v
    end
    return py_spool(unpack(flat))
  end
  uwsgi.send_to_spooler = uwsgi.spool
end

-- ---- response extras, set from inside the app (runtime.lua keeps them per request) ------
uwsgi.add_headers = shared.add_headers     -- add_headers({name = value, {name, value}, ...})
uwsgi.add_header = function(name, value) uwsgi.add_headers({ { name, value } }) end
uwsgi.start_response = shared.start_response  -- the app then returns only the body

-- ---- RPC and signal handlers: per-state registries -------------------------------------
local rpc_registry, signal_registry = {}, {}
-- hooks.lua calls Lua RPC functions by name (hook:NAME) from here
package.loaded["uwsgi.rpc_registry"] = rpc_registry
local py_register_rpc, py_register_signal = uwsgi.register_rpc, uwsgi.register_signal
if py_register_rpc then
  function uwsgi.register_rpc(name, fn, argc)
    if type(name) ~= "string" or (type(fn) ~= "function" and type(fn) ~= "table") then
      error("uwsgi.register_rpc(name, function): bad arguments", 2)
    end
    rpc_registry[name] = fn
    return py_register_rpc(name) and true or nil
  end
end
if py_register_signal then
  function uwsgi.register_signal(sig, who, fn, ...)
    if type(sig) ~= "number" or (type(fn) ~= "function" and type(fn) ~= "table") then
      error("uwsgi.register_signal(signum, target, function): bad arguments", 2)
    end
    signal_registry[sig] = { fn, ... }
    return py_register_signal(sig, who or "") and true or nil
  end
end

-- Called from Python (the RPC / signal wrappers): plain strings in and out.
local call_rpc
if shared.XPCALL_ARGS then
  function call_rpc(name, ...)
    local fn = rpc_registry[name]
    if fn == nil then return false, "no Lua rpc function named " .. tostring(name) end
    local ok, res = xpcall(function(...) return fn(...) end, traceback, ...)
    if not ok then return false, res end
    if res == nil then return true, "" end
    return true, tostring(res)
  end
else
  -- Lua 5.1's xpcall passes no arguments to the function: a closure over them
  function call_rpc(name, ...)
    local fn = rpc_registry[name]
    if fn == nil then return false, "no Lua rpc function named " .. tostring(name) end
    local args, n = { ... }, select("#", ...)
    local ok, res = xpcall(function() return fn(unpack(args, 1, n)) end, traceback)
    if not ok then return false, res end
    if res == nil then return true, "" end
    return true, tostring(res)
  end
end

local function call_signal(sig)
  local entry = signal_registry[sig]
  if entry == nil then return false, "no Lua handler for signal " .. tostring(sig) end
  local ok, res = xpcall(function() return entry[1](sig, entry[2]) end, traceback)
  if not ok then return false, res end
  return true, nil
end

package.loaded.uwsgi = uwsgi
_G.uwsgi = uwsgi

-- A state made by the master before fork learns its worker's numbers when a worker takes it.
local function set_ids(wid, sid) uwsgi.mywid, uwsgi.mysid = wid, sid end

return { call_rpc = call_rpc, call_signal = call_signal, set_ids = set_ids }
