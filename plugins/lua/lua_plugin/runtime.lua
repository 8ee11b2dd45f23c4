-- The Lua half of the plugin, run once in every lua_State (state.py calls it with `py`, a
-- table of Python callbacks, and `conf`). It returns the table M that Python drives:
--   M.load_app(path)        load the WSAPI app
--   M.call(env, app_path)   call the app and validate its response; drive the first body slice
--                           (env: a table, or a uwsgi packet's vars block as a string)
--   M.resume()              drive the next body slice (the trampoline)
--   M.abandon()             forget the current body (request aborted)
--   M.gc(full)              one GC step or a full collection
-- Everything crosses to Python as strings and numbers: the status, the headers flattened to
-- "name\0value\0...", and coalesced body slices (lupa bugs #294/#84: no long-lived tables).
local py, conf = ...

local type, tostring, tonumber, pairs, ipairs = type, tostring, tonumber, pairs, ipairs
local xpcall, pcall, error, select, setmetatable, getmetatable = xpcall, pcall, error, select, setmetatable, getmetatable
local concat, floor, find, format = table.concat, math.floor, string.find, string.format
local unpack = unpack or table.unpack
local traceback = debug.traceback
local collectgarbage = collectgarbage

local M = {}

local SLICE = conf.slice or 32768        -- bytes coalesced before a flush
local SLICE_TIME = conf.slice_time or 0.02  -- seconds a slow producer may hold a slice

-- Results of M.call / M.resume (mirrored in response.py).
local OK, APP_ERROR, BAD_RESPONSE, BODY_ERROR = 0, 1, 2, 3
local B_END, B_MORE, B_WAIT, B_ERROR = 0, 1, 2, 3

-- ---- a monotonic clock for the slice time budget ---------------------------------------
local now
do
  local ok, ffi = pcall(require, "ffi")
  if ok then
    local ok2 = pcall(ffi.cdef, [[
      typedef struct { long tv_sec; long tv_nsec; } ulua_timespec;
      int clock_gettime(int clk_id, ulua_timespec *tp);
    ]])
    if ok2 then
      local ts = ffi.new("ulua_timespec")
      local C = ffi.C
      now = function()
        C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
        return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
      end
    end
  end
  if not now then now = py.monotonic end
end
-- Without ffi each clock read is a Python call: read it every few chunks only.
local CLOCK_EVERY = (now == py.monotonic) and 8 or 1

-- ---- output shims: print / io.write go to the log, os.exit is reported ------------------
local function tostr_all(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do parts[i] = tostring((select(i, ...))) end
  return parts, n
end

print = function(...)
  local parts = tostr_all(...)
  py.log(concat(parts, "\t"))
end

local log_write = py.log_write
local stdout_shim = {}
function stdout_shim.write(self, ...)
  local n = select("#", ...)
  for i = 1, n do
    local v = select(i, ...)
    local t = type(v)
    if t == "string" or t == "number" then log_write(tostring(v)) end
  end
  return self
end
function stdout_shim.flush() return true end
function stdout_shim.setvbuf() return true end
function stdout_shim.close() return true end
function stdout_shim.lines() return function() return nil end end
io.write = function(...) return stdout_shim.write(stdout_shim, ...) end
io.stdout = stdout_shim

os.exit = function(code)
  py.exit(code)
  error("os.exit() called", 0)  -- only reached when Python refuses to exit (load check)
end

-- ---- the uwsgi module ---------------------------------------------------------------
local uwsgi = {}
-- A Python exception in an API call becomes a plain Lua error message naming the function.
local function lift(name, f)
  local function check(ok, ...)
    if ok then return ... end
    error("uwsgi." .. name .. ": " .. tostring((...)), 0)
  end
  return function(...) return check(pcall(f, ...)) end
end
for k, v in pairs(py.api) do uwsgi[k] = lift(k, v) end
uwsgi.version = conf.version
uwsgi.mywid = conf.mywid
uwsgi.mysid = conf.mysid
uwsgi.numproc = conf.numproc

-- Async waits arm a wait in Python; the body's next yield (even nil) then suspends the core.
local pending = false
local py_sleep, py_wait_read, py_wait_write = uwsgi.async_sleep, uwsgi.wait_fd_read, uwsgi.wait_fd_write
function uwsgi.async_sleep(seconds)
  if seconds == nil then return nil end
  py_sleep(seconds)
  pending = true
  return nil
end
function uwsgi.wait_fd_read(fd, timeout)
  if fd == nil then return nil end
  py_wait_read(fd, timeout or 0)
  pending = true
  return nil
end
function uwsgi.wait_fd_write(fd, timeout)
  if fd == nil then return nil end
  py_wait_write(fd, timeout or 0)
  pending = true
  return nil
end

-- Table forms of the cache calls, unrolled here so that no Lua table reaches Python (#84):
-- cache_get({k1, k2}) -> {k1 = v1, k2 = v2}; cache_set({k = v}, expires, cache) -> true, or
-- nil and the array of keys that could not be stored; cache_del/cache_exists({k1, k2}).
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

-- Per-request response extras set from inside the app.
local extra_headers, started_status, started_headers

function uwsgi.add_headers(t)
  if type(t) ~= "table" then error("uwsgi.add_headers: expected a table of headers", 2) end
  extra_headers = extra_headers or {}
  for k, v in pairs(t) do
    if type(k) == "number" and type(v) == "table" then
      extra_headers[#extra_headers + 1] = { v[1], v[2] }  -- { {name, value}, ... }
    else
      extra_headers[#extra_headers + 1] = { k, v }
    end
  end
end
uwsgi.add_header = function(name, value) uwsgi.add_headers({ { name, value } }) end

-- uwsgi.start_response(status, headers): give the status and headers from inside the app;
-- the app then returns only the body.
function uwsgi.start_response(status, headers)
  started_status = status
  started_headers = headers or {}
  return true, nil
end

-- RPC and signal handlers live in per-state registries; Python calls them by name/number.
local rpc_registry, signal_registry = {}, {}
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

-- Lua 5.1's xpcall passes no arguments to the function: closures are needed there.
local XPCALL_ARGS = select(2, xpcall(function(a) return a end, function() end, true)) == true

-- Called from Python (the RPC / signal wrappers): plain strings in and out.
function M.call_rpc(name, ...)
  local fn = rpc_registry[name]
  if fn == nil then return false, "no Lua rpc function named " .. tostring(name) end
  local ok, res = xpcall(function(...) return fn(...) end, traceback, ...)
  if not ok then return false, res end
  if res == nil then return true, "" end
  return true, tostring(res)
end
if not XPCALL_ARGS then
  M.call_rpc = function(name, ...)
    local fn = rpc_registry[name]
    if fn == nil then return false, "no Lua rpc function named " .. tostring(name) end
    local args, n = { ... }, select("#", ...)
    local ok, res = xpcall(function() return fn(unpack(args, 1, n)) end, traceback)
    if not ok then return false, res end
    if res == nil then return true, "" end
    return true, tostring(res)
  end
end

function M.call_signal(sig)
  local entry = signal_registry[sig]
  if entry == nil then return false, "no Lua handler for signal " .. tostring(sig) end
  local ok, res = xpcall(function() return entry[1](sig, entry[2]) end, traceback)
  if not ok then return false, res end
  return true, nil
end

package.loaded.uwsgi = uwsgi
_G.uwsgi = uwsgi

-- ---- loading ------------------------------------------------------------------------
function M.run_file(path)
  local chunk, err = loadfile(path)
  if not chunk then return false, err end
  local ok, res = xpcall(chunk, traceback)
  if not ok then return false, res end
  return true, nil
end

local app

function M.load_app(path)
  local chunk, err = loadfile(path)
  if not chunk then return false, err end
  local ok, res = xpcall(chunk, traceback)
  if not ok then return false, res end
  local t = type(res)
  if t == "table" then
    local run = res.run
    if type(run) == "function" then
      res = run
    else
      local mt = getmetatable(res)
      if not (mt and type(mt.__call) == "function") then
        return false, path .. " returned a table without a run function"
      end
    end
  elseif t ~= "function" then
    return false, path .. " must return the WSAPI app: a function or a table with a run function (got "
      .. t .. ")"
  end
  app = res
  return true, nil
end

function M.check_syntax(path)
  local chunk, err = loadfile(path)
  if not chunk then return false, err end
  return true, nil
end

-- ---- the request ---------------------------------------------------------------------
local py_input_read, py_input_readline, py_log = py.input_read, py.input_readline, py.log

-- env.input / env.error are called with a colon (input:read(n)): the functions ignore self.
local function input_read(self, n)
  if n == nil then return py_input_read(-1, 0) end
  if type(n) == "number" then return py_input_read(n, 1) end
  if n == "*a" or n == "a" then return py_input_read(-1, 0) end
  if n == "*l" or n == "l" then return py_input_readline(0) end
  if n == "*L" or n == "L" then return py_input_readline(1) end
  if n == "*n" or n == "n" then
    local line = py_input_readline(0)
    return line and tonumber(line)
  end
  local size = tonumber(n)
  if size then return py_input_read(size, 1) end
  error("input:read: bad format " .. tostring(n), 2)
end
local function input_readline(self) return py_input_readline(1) end
local function input_lines(self)
  return function() return py_input_readline(0) end
end
local function error_write(self, ...)
  local parts = tostr_all(...)
  py_log(concat(parts))
  return self
end
local function noop() return true end

local cur_iter  -- the body iterator of the request running on this state

-- Coalesce body chunks into one slice: resume the iterator until the slice is full, the time
-- budget is spent, a wait was armed (suspend), or the body ends. One xpcall per slice, not per
-- chunk: the chunks gathered so far live in `parts` so that an error keeps them.
local parts, nparts, size = {}, 0, 0

local function drive_loop()
  local iter = cur_iter
  local t0 = now()
  local count = 0
  while true do
    local chunk = iter()
    if chunk == nil then
      if pending then
        pending = false
        return B_WAIT
      end
      cur_iter = nil
      return B_END
    end
    if type(chunk) ~= "string" then
      local t = type(chunk)
      local mt = getmetatable(chunk)
      if t == "number" or (t == "table" and mt and mt.__tostring) then
        chunk = tostring(chunk)
      else
        error("the response body iterator yielded a " .. t .. " (strings only)", 0)
      end
    end
    local len = #chunk
    if len > 0 then
      nparts = nparts + 1
      parts[nparts] = chunk
      size = size + len
    end
    if pending then
      pending = false
      return B_WAIT
    end
    if size >= SLICE then return B_MORE end
    count = count + 1
    if nparts > 0 and count % CLOCK_EVERY == 0 and now() - t0 >= SLICE_TIME then
      return B_MORE
    end
  end
end

local function drive()
  parts, nparts, size = {}, 0, 0
  local ok, state = xpcall(drive_loop, traceback)
  local slice = concat(parts, "", 1, nparts)
  parts = nil
  if not ok then
    cur_iter = nil
    local msg = tostring(state)
    if not find(msg, "yielded a", 1, true) then msg = "error in the response body iterator: " .. msg end
    return slice, B_ERROR, msg
  end
  return slice, state
end

local function valid_name(k)
  return type(k) == "string" and #k > 0 and not find(k, "[^%w!#$%%&'*+%-.^_`|~]")
end

local function bad_value(v)
  return find(v, "[\r\n]") or find(v, "\0", 1, true)
end

local function header_value(name, v, out, n)
  local tv = type(v)
  if tv == "number" then v = tostring(v) elseif tv ~= "string" then
    return nil, "header " .. name .. " has a " .. tv .. " value (strings, numbers or an array of them)"
  end
  if bad_value(v) then return nil, "header " .. name .. " has CR, LF or NUL in its value" end
  out[n + 1] = name
  out[n + 2] = v
  return n + 2
end

-- The headers table -> "name\0value\0name\0value"; or nil and the problem.
local function flatten_headers(headers, out, n)
  for k, v in pairs(headers) do
    if not valid_name(k) then
      if type(k) ~= "string" then
        return nil, "header name " .. tostring(k) .. " is a " .. type(k) .. ", not a string"
      end
      return nil, format("invalid header name %q", k)
    end
    if type(v) == "table" then
      for i = 1, #v do
        local err
        n, err = header_value(k, v[i], out, n)
        if not n then return nil, err end
      end
    else
      local err
      n, err = header_value(k, v, out, n)
      if not n then return nil, err end
    end
  end
  return n
end

-- The env straight from a uwsgi packet's vars block (u16le key length, key, u16le value length,
-- value ...; the core already checked it): cheaper than lupa's table_from of the Python dict,
-- which converts every key and value one call at a time.
local byte, sub = string.byte, string.sub
local new_table
do
  local ok, tnew = pcall(require, "table.new")
  new_table = ok and function() return tnew(0, 40) end or function() return {} end
end

local function env_from_block(block)
  local env = new_table()
  local pos, last = 1, #block
  while pos + 3 <= last do
    local k0, k1 = byte(block, pos, pos + 1)
    local ks = pos + 2
    local ke = ks + k0 + k1 * 256
    local v0, v1 = byte(block, ke, ke + 1)
    if v1 == nil then break end
    local vs = ke + 2
    pos = vs + v0 + v1 * 256
    env[sub(block, ks, ke - 1)] = sub(block, vs, pos - 1)
  end
  return env
end

local function make_env(env, app_path)
  if type(env) == "string" then env = env_from_block(env) end
  env.APP_PATH = app_path
  if env.SCRIPT_NAME == nil then env.SCRIPT_NAME = "" end
  if env.PATH_INFO == nil then env.PATH_INFO = "" end
  if env.QUERY_STRING == nil then env.QUERY_STRING = "" end
  if env.CONTENT_TYPE == nil then env.CONTENT_TYPE = "" end
  if env.CONTENT_LENGTH == nil then env.CONTENT_LENGTH = "" end
  env.input = { read = input_read, readline = input_readline, lines = input_lines }
  env.error = { write = error_write, flush = noop, setvbuf = noop }
  return env
end

-- Returns OK, status, headers, slice, body state [, error] or APP_ERROR/BAD_RESPONSE/BODY_ERROR, message.
function M.call(env, app_path)
  if app == nil then return BAD_RESPONSE, "no WSAPI app loaded" end
  pending = false
  extra_headers, started_status, started_headers = nil, nil, nil
  cur_iter = nil
  env = make_env(env, app_path)
  local ok, status, headers, body
  if XPCALL_ARGS then
    ok, status, headers, body = xpcall(app, traceback, env)
  else
    ok, status, headers, body = xpcall(function() return app(env) end, traceback)
  end
  if not ok then return APP_ERROR, tostring(status) end
  if started_status ~= nil then
    -- uwsgi.start_response was used: the app returned only the body
    status, headers, body = started_status, started_headers, status
  end

  local ts = type(status)
  if ts == "number" then
    if status % 1 ~= 0 then return BAD_RESPONSE, "the app returned a non-integer status " .. tostring(status) end
    status = format("%d", status)
  elseif ts ~= "string" then
    return BAD_RESPONSE, "the app returned a " .. ts .. " status (a number or a string)"
  end
  if type(headers) ~= "table" then
    return BAD_RESPONSE, "the app returned " .. type(headers) .. " headers (a table of name = value)"
  end
  local out, err = {}, nil
  local n
  n, err = flatten_headers(headers, out, 0)
  if not n then return BAD_RESPONSE, err end
  if extra_headers then
    for i = 1, #extra_headers do
      local name, v = extra_headers[i][1], extra_headers[i][2]
      if not valid_name(name) then return BAD_RESPONSE, "uwsgi.add_headers: invalid header name " .. tostring(name) end
      n, err = header_value(name, v, out, n)
      if not n then return BAD_RESPONSE, err end
    end
  end
  local hdrs = concat(out, "\0")

  local tb = type(body)
  if tb == "string" then return OK, status, hdrs, body, B_END end
  if tb == "nil" then return OK, status, hdrs, "", B_END end
  if tb == "number" then return OK, status, hdrs, tostring(body), B_END end
  local mt = getmetatable(body)
  if tb == "table" and not (mt and mt.__call) then
    if mt and mt.__tostring then return OK, status, hdrs, tostring(body), B_END end
    for i = 1, #body do
      local ti = type(body[i])
      if ti ~= "string" then
        if ti == "number" then body[i] = tostring(body[i]) else
          return BAD_RESPONSE, "the response body table has a " .. ti .. " at index " .. i .. " (strings only)"
        end
      end
    end
    return OK, status, hdrs, concat(body), B_END
  end
  if tb ~= "function" and not (mt and mt.__call) then
    return BAD_RESPONSE, "the app returned a " .. tb .. " body (a string, an array of strings or an iterator)"
  end
  cur_iter = body
  local slice, state, berr = drive()
  if state == B_ERROR then return BODY_ERROR, berr end
  return OK, status, hdrs, slice, state
end

function M.resume()
  if cur_iter == nil then return "", B_END end
  return drive()
end

function M.abandon()
  cur_iter = nil
  pending = false
  extra_headers, started_status, started_headers = nil, nil, nil
end

function M.gc(full)
  if full then collectgarbage("collect") else collectgarbage("step", 0) end
end

function M.memory_kb() return collectgarbage("count") end

function M.shell()
  debug.debug()
end

return M
