-- uwsgi.tcp(): cosockets (OpenResty's ngx.socket.tcp shape, LuaSocket's method names), the Lua
-- half. Run once per lua_State by uwsgi_table.lua with the operations of cosocket.py (`ops`),
-- the `uwsgi` table, runtime.lua's slot_calls and arm_wait (the trampoline's flag: the body's
-- next yield suspends the core); returns the function uwsgi.tcp.
--
-- Inside the body's coroutine under --async, an operation that would block arms a wait on the
-- socket and yields: the trampoline suspends this core until the socket is ready or the
-- operation's time is up, then the operation goes on where it stopped. Anywhere else (the app
-- function itself, --threads, no --async) it waits in place, blocking only its thread.
--
-- Two back ends behind the same methods (this file checks the arguments):
--   cosocket_ffi.lua (LuaJIT): the socket I/O, the buffer and the keepalive pool in Lua over
--     libc through the FFI; Python only opens new connections (name resolution, the loop's
--     kept fd) and closes them: a pooled request crosses to Python once (the read wait, which
--     arms it in one call), not once per method;
--   the Python operations of cosocket.py (other engines), below: one crossing per call.
local ops, uwsgi, slot_calls, arm_wait, at_turn_end = ...

local type, tostring, tonumber, error = type, tostring, tonumber, error
local setmetatable, getmetatable = setmetatable, getmetatable
local concat = table.concat
local co_running, co_yield = coroutine.running, coroutine.yield
local op_yieldable, op_core = ops.yieldable, ops.core
local op_wait_read, op_wait_write = ops.wait_read, ops.wait_write

local LINE, ALL, COUNT = 0, 1, 2

-- A thread loop's cores never change: once a call ran on one with others beside it, the
-- Python question need not be asked again in this state.
local multi_core = false
local function cooperative()
  local co, main = co_running()
  if co == nil or main then return false end
  if not multi_core then multi_core = op_yieldable() end
  return multi_core
end

-- The core of the running request: runtime.lua's slot (no crossing), else Python's answer
-- (-1 outside a request).
local function core_id()
  local slot = slot_calls.running
  if slot == nil then return op_core() end
  return slot
end

-- A wait on fd for the calling core, armed in Python by one call; the caller then yields.
local function arm(fd, writing, seconds)
  if writing then op_wait_write(fd, seconds) else op_wait_read(fd, seconds) end
  arm_wait()
end

-- ---- the back end ------------------------------------------------------------------------------
local B
if ops.ffi_code then
  local load_chunk = loadstring or load
  local ok, backend = pcall(function()
    return assert(load_chunk(ops.ffi_code, "@lua_plugin/cosocket_ffi.lua"))(ops, arm, cooperative, slot_calls, core_id, at_turn_end)
  end)
  if ok and backend then
    B = backend
  elseif jit then   -- LuaJIT without its FFI back end: slower, and worth a line in the log
    uwsgi.log("[uwsgi-lua] cosockets: the FFI back end did not load (" .. tostring(backend) ..
              "): Python serves every call")
  end
end

if B == nil then
  -- Python's operations: a would-block answers (false, fd, writing, seconds left).
  local op_new, op_connect, op_send, op_receive, op_resume = ops.new, ops.connect, ops.send, ops.receive, ops.resume
  local op_settimeouts, op_close, op_keepalive, op_reused = ops.settimeouts, ops.close, ops.setkeepalive, ops.getreusedtimes

  local function finish(id, coop, r1, r2, r3, r4)
    while r1 == false do
      arm(r2, r3, r4)
      co_yield()
      r1, r2, r3, r4 = op_resume(id, coop)
    end
    if r1 ~= nil then return r1 end     -- LuaSocket's: the result alone, or nil, err[, partial]
    if r3 == nil then return nil, r2 end
    return nil, r2, r3
  end

  local function result(r1, r2)
    if r1 ~= nil then return r1 end
    return nil, r2
  end

  B = {
    new = function() local core = core_id(); return { op_new(core, slot_calls[core] or 0) } end,
    connect = function(s, host, port) local id = s[1]; local coop = cooperative(); return finish(id, coop, op_connect(id, host, port, coop)) end,
    send = function(s, data) local id = s[1]; local coop = cooperative(); return finish(id, coop, op_send(id, data, coop)) end,
    receive = function(s, kind, n) local id = s[1]; local coop = cooperative(); return finish(id, coop, op_receive(id, kind, n, coop)) end,
    settimeouts = function(s, c, w, r) op_settimeouts(s[1], c, w, r) end,
    close = function(s) return result(op_close(s[1])) end,
    setkeepalive = function(s, timeout, size) return result(op_keepalive(s[1], timeout, size)) end,
    getreusedtimes = function(s) return result(op_reused(s[1])) end,
  }
end

local b_connect, b_send, b_receive, b_new = B.connect, B.send, B.receive, B.new

-- ---- the methods ----------------------------------------------------------------------------
local sock = {}
sock.__index = sock

local function check(self)
  if type(self) ~= "table" or getmetatable(self) ~= sock then
    error("bad cosocket object (use sock:method(...))", 3)
  end
end

function sock:connect(host, port)
  check(self)
  if type(host) ~= "string" then error("bad argument #1 to 'connect' (string expected)", 2) end
  if port ~= nil then
    port = tonumber(port)
    if port == nil or port % 1 ~= 0 or port < 0 or port > 65535 then
      error("bad argument #2 to 'connect' (port number expected)", 2)
    end
  end
  return b_connect(self, host, port)
end

function sock:send(data)
  check(self)
  local t = type(data)
  if t == "table" then
    data = concat(data)
  elseif t == "number" then
    data = tostring(data)
  elseif t ~= "string" then
    error("bad argument #1 to 'send' (string, number or array of strings expected, got " .. t .. ")", 2)
  end
  return b_send(self, data)
end

function sock:receive(pattern)
  check(self)
  local kind, n = LINE, 0
  local size = tonumber(pattern)
  if size ~= nil then
    if size < 0 or size % 1 ~= 0 then error("bad argument #1 to 'receive' (bad byte count)", 2) end
    kind, n = COUNT, size
  elseif pattern == nil or pattern == "*l" or pattern == "l" then
    kind = LINE
  elseif pattern == "*a" or pattern == "a" then
    kind = ALL
  else
    error("bad argument #1 to 'receive' (invalid pattern " .. tostring(pattern) .. ")", 2)
  end
  return b_receive(self, kind, n)
end

local function ms(v, what)
  if v == nil then return 0 end
  local n = tonumber(v)
  if n == nil then error("bad argument to '" .. what .. "' (milliseconds expected)", 3) end
  return n
end

-- milliseconds, as OpenResty's; 0 (or nil) = no limit
function sock:settimeout(t)
  check(self)
  local v = ms(t, "settimeout")
  B.settimeouts(self, v, v, v)
  return 1
end

function sock:settimeouts(connect_t, send_t, read_t)
  check(self)
  B.settimeouts(self, ms(connect_t, "settimeouts"), ms(send_t, "settimeouts"), ms(read_t, "settimeouts"))
  return 1
end

function sock:close()
  check(self)
  return B.close(self)
end

function sock:setkeepalive(timeout, size)
  check(self)
  if timeout ~= nil then timeout = ms(timeout, "setkeepalive") end
  if size ~= nil then
    size = tonumber(size)
    if size == nil or size < 1 then error("bad argument #2 to 'setkeepalive' (pool size must be positive)", 2) end
  end
  return B.setkeepalive(self, timeout, size)
end

function sock:getreusedtimes()
  check(self)
  return B.getreusedtimes(self)
end

return function()
  return setmetatable(b_new(), sock)
end
