-- The request path of the plugin's Lua half: loading the app, the WSAPI env, the call, the
-- response checks and the body trampoline.
-- state.py runs the plugin's three Lua files once in every lua_State, in this order, each with
-- the same three arguments:
--   py      Python callbacks: log, log_write, exit, monotonic, input_read, input_readline, and
--           api (the functions behind the `uwsgi` table); native: the C module uwsgi.native
--           when it loaded (native.py; then no monotonic, and api lacks what native.api has)
--   conf    version, mywid, mysid, numproc, slice, slice_time
--   shared  the table the files hand each other things through (never globals):
--             output.lua       sets error_write (env.error:write)
--             runtime.lua      sets arm_wait, start_response, add_headers (the writers of its
--                              per-request state), XPCALL_ARGS and slot_calls (requests begun
--                              per slot, and .running: the slot whose Lua runs now, nil
--                              outside M.call/M.resume; for uwsgi.tcp(), which then asks
--                              Python for no core id)
--             uwsgi_table.lua  reads them into the `uwsgi` table
-- This file returns the table M that Python drives:
--   M.run_file(path)        run a --lua-load / --lua-postload file
--   M.load_app(path)        load the WSAPI app (M.check_syntax(path): compile it only)
--   M.call(env, app_path, slot)  call the app and validate its response; drive the first body
--                           slice (env: a table, or a uwsgi packet's vars block as a string)
--   M.resume(slot)          drive the next body slice (the trampoline)
--   M.abandon(slot)         forget the slot's body (request aborted)
-- A state serves all the async cores of one thread (uWSGI's async "threads" in one lua_State):
-- `slot` (the core's id) keeps each core's body apart. Only one core runs Lua at a time, so the
-- rest of the per-request state below is the running core's.
--   M.gc(full, under_kb)    one GC step, or a full collection (full, or a heap under under_kb)
-- Everything crosses to Python as strings and numbers: the status, the headers flattened to
-- "name\0value\0...", and coalesced body slices (lupa bugs #294/#84: no long-lived tables).
-- What a request reads (the app, the wait flag, the response extras) lives in upvalues here,
-- not in `shared`: the uwsgi table changes it through the writers below.
local py, conf, shared = ...

local type, tostring, tonumber, pairs = type, tostring, tonumber, pairs
local xpcall, pcall, error, select, getmetatable = xpcall, pcall, error, select, getmetatable
local concat, find, format = table.concat, string.find, string.format
local traceback = debug.traceback
local collectgarbage = collectgarbage

local M = {}
local native = py.native     -- uwsgi.native (C), or nil: the Lua code below does its work

local SLICE = conf.slice or 32768        -- bytes coalesced before a flush
local SLICE_TIME = conf.slice_time or 0.02  -- seconds a slow producer may hold a slice

-- Results of M.call / M.resume (mirrored in response.py).
local OK, APP_ERROR, BAD_RESPONSE, BODY_ERROR = 0, 1, 2, 3
local B_END, B_MORE, B_WAIT, B_ERROR = 0, 1, 2, 3

-- Lua 5.1's xpcall passes no arguments to the function: closures are needed there.
local XPCALL_ARGS = select(2, xpcall(function(a) return a end, function() end, true)) == true
shared.XPCALL_ARGS = XPCALL_ARGS

-- ---- a monotonic clock for the slice time budget ---------------------------------------
local now = native and native.monotonic
if not now then
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

-- ---- the request's state, and its writers for the uwsgi table ----------------------------
local app               -- the WSAPI app (M.load_app)
local cur_iter          -- the body iterator of the request running on this state
-- Between slices a streamed body waits in its core's slot: iterator, status, flat headers.
local slot_iter, slot_status, slot_hdrs = {}, {}, {}
-- Requests begun per slot (M.call): uwsgi.tcp() tells a core's new request by it (the native
-- lane counts a core's requests only after them).
local slot_calls = {}
shared.slot_calls = slot_calls

-- Functions run at the end of the worker's loop turn when one asked for it (cosocket_ffi.lua's
-- flush of its held sends): Python calls M.turn_end, an entry made with the state like M.call
-- (a Lua function handed to Python from inside a coroutine must not be called from there).
local turn_end = {}
function shared.at_turn_end(fn) turn_end[#turn_end + 1] = fn end
local pending = false   -- a wait was armed: the body's next yield (even nil) suspends the core
local extra_headers, started_status, started_headers  -- set from inside the app

-- uwsgi.async_sleep / wait_fd_read / wait_fd_write call this once Python has armed the wait.
function shared.arm_wait() pending = true end

-- uwsgi.add_headers(t): { name = value, ... } and/or { {name, value}, ... }
function shared.add_headers(t)
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

-- uwsgi.start_response(status, headers): give the status and headers from inside the app;
-- the app then returns only the body.
function shared.start_response(status, headers)
  started_status = status
  started_headers = headers or {}
  return true, nil
end

-- ---- loading ------------------------------------------------------------------------
function M.run_file(path)
  local chunk, err = loadfile(path)
  if not chunk then return false, err end
  local ok, res = xpcall(chunk, traceback)
  if not ok then return false, res end
  return true, nil
end

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

-- ---- the WSAPI env ------------------------------------------------------------------
local py_input_read, py_input_readline = py.input_read, py.input_readline
local error_write = shared.error_write

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
local function noop() return true end
-- env.ctx: the request's ctx that code hooks share with the app (lua_plugin/hooks.py), a view
local api_call = py.api_call
local ctx_view = setmetatable({}, { __index = function(_, k) return api_call("ctx_get", k) end,
                                    __newindex = function(_, k, v) api_call("ctx_set", k, v) end })

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

local native_env = native and native.env
local function make_env(env, app_path)
  if native_env and type(env) == "string" then
    env = native_env(env, app_path)     -- parsed in C, APP_PATH and the CGI defaults included
  else
    if type(env) == "string" then env = env_from_block(env) end
    env.APP_PATH = app_path
    if env.SCRIPT_NAME == nil then env.SCRIPT_NAME = "" end
    if env.PATH_INFO == nil then env.PATH_INFO = "" end
    if env.QUERY_STRING == nil then env.QUERY_STRING = "" end
    if env.CONTENT_TYPE == nil then env.CONTENT_TYPE = "" end
    if env.CONTENT_LENGTH == nil then env.CONTENT_LENGTH = "" end
  end
  env.input = { read = input_read, readline = input_readline, lines = input_lines }
  env.error = { write = error_write, flush = noop, setvbuf = noop }
  env.ctx = ctx_view
  return env
end

-- ---- header checks ------------------------------------------------------------------
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

-- ---- the body trampoline --------------------------------------------------------------
-- Coalesce body chunks into one slice: resume the iterator until the slice is full, the time
-- budget is spent, a wait was armed (suspend), or the body ends. One xpcall per slice, not per
-- chunk: the chunks gathered so far live in `parts` so that an error keeps them.
local parts, nparts, size = {}, 0, 0
local cur_status, cur_hdrs   -- the response being driven, for a flush before its headers went out

-- The body is about to block (output.lua wraps os.execute, io.popen, socket.sleep/select): the
-- chunks gathered so far go out now instead of after the pause (a slice is only handed to
-- Python at its end, and no other thread may touch this state while the call blocks).
local stream_flush = py.stream_flush
function shared.flush_slice()
  if cur_status == nil or parts == nil or nparts == 0 then return end
  local slice = concat(parts, "", 1, nparts)
  parts, nparts, size = {}, 0, 0
  stream_flush(slice, cur_status, cur_hdrs)
end

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

-- ---- the call -----------------------------------------------------------------------
-- Returns OK, status, headers, slice, body state [, error] or APP_ERROR/BAD_RESPONSE/BODY_ERROR, message.
local native_headers = native and native.headers

local function call(env, app_path, slot)
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
  -- walked in C when the module is there; nil from it: something is invalid, named below
  local hdrs = native_headers and native_headers(headers, extra_headers)
  if not hdrs then
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
    hdrs = concat(out, "\0")
  end

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
  cur_status, cur_hdrs = status, hdrs
  local slice, state, berr = drive()
  if state == B_ERROR then
    cur_status, cur_hdrs = nil, nil
    return BODY_ERROR, berr
  end
  if state == B_END then
    cur_status, cur_hdrs = nil, nil
  else
    slot_iter[slot], slot_status[slot], slot_hdrs[slot] = cur_iter, status, hdrs
  end
  return OK, status, hdrs, slice, state
end

-- the results of a call or resume, once no slot's Lua runs any more
local function ran(...)
  slot_calls.running = nil
  return ...
end

function M.call(env, app_path, slot)
  slot_calls[slot] = (slot_calls[slot] or 0) + 1
  slot_calls.running = slot
  return ran(call(env, app_path, slot))
end

function M.resume(slot)
  cur_iter, cur_status, cur_hdrs = slot_iter[slot], slot_status[slot], slot_hdrs[slot]
  if cur_iter == nil then return "", B_END end
  slot_calls.running = slot
  local slice, state, berr = drive()
  slot_calls.running = nil
  if state ~= B_MORE and state ~= B_WAIT then
    cur_status, cur_hdrs = nil, nil
    slot_iter[slot], slot_status[slot], slot_hdrs[slot] = nil, nil, nil
  end
  return slice, state, berr
end

function M.abandon(slot)
  cur_iter = nil
  cur_status, cur_hdrs = nil, nil
  if slot ~= nil then slot_iter[slot], slot_status[slot], slot_hdrs[slot] = nil, nil, nil end
  pending = false
  extra_headers, started_status, started_headers = nil, nil, nil
end

function M.turn_end()
  for i = 1, #turn_end do turn_end[i]() end
end

function M.gc(full, full_under_kb)
  if full or (full_under_kb and collectgarbage("count") < full_under_kb) then
    collectgarbage("collect")
  else
    collectgarbage("step", 0)
  end
end

function M.memory_kb() return collectgarbage("count") end

function M.shell()
  debug.debug()
end

return M
