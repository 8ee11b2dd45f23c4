-- Where a Lua app's output goes. Run first of the plugin's three Lua files in every lua_State
-- (state.py runs them with `py`, `conf` and `shared`: see runtime.lua's header):
--   print, io.write, io.stdout:write   to the log (Python keeps a partial io.write line until
--                                      its end or the end of the request)
--   os.exit(code)                      reported to Python, which ends the worker
--   shared.error_write                 env.error:write, put in every env by runtime.lua
local py, conf, shared = ...

local type, tostring, select, error = type, tostring, select, error
local concat = table.concat
local log, log_write = py.log, py.log_write

local function tostr_all(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do parts[i] = tostring((select(i, ...))) end
  return parts, n
end

print = function(...)
  local parts = tostr_all(...)
  log(concat(parts, "\t"))
end

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

-- Calls that block the worker's thread: a streamed body's chunks gathered so far go out first
-- (runtime.lua's flush_slice), so a client sees each chunk before the pause, not after it.
local function flushing(fn)
  return function(...)
    local flush = shared.flush_slice
    if flush then flush() end
    return fn(...)
  end
end
os.execute = flushing(os.execute)
io.popen = flushing(io.popen)
io.read = flushing(io.read)
-- luasocket's waits, once it is required
local orig_require = require
require = function(name, ...)
  local m = orig_require(name, ...)
  if (name == "socket" or name == "socket.core") and type(m) == "table" and not m.__uwsgi_flushing then
    for _, f in ipairs({"sleep", "select"}) do
      if type(m[f]) == "function" then m[f] = flushing(m[f]) end
    end
    m.__uwsgi_flushing = true
  end
  return m
end

-- env.error:write(...): called with a colon, self is env.error. One log line per call.
function shared.error_write(self, ...)
  local parts = tostr_all(...)
  log(concat(parts))
  return self
end
