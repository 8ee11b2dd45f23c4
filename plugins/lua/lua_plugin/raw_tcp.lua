-- Raw TCP handlers in Lua (--lua-raw FILE): the Lua half, run once in the thread's lua_State
-- (raw_tcp.py) with `py`, the Python functions acting on the connection whose fd they get:
--   py.recv_nb(fd, n)     data | nil, "again" (nothing yet) | nil, "closed" | nil, error
--   py.send_nb(fd, data)  bytes sent (0: the socket is full) | nil, "closed" | nil, error
--   py.arm(fd, write)     arm the core's wait on the socket (one slice of the timeout)
--   py.after_wait(fd)     "ready" | "again" (wait more) | "stop" (graceful stop) | "timeout"
--   py.close(fd), py.settimeout(fd, seconds)
-- Returns M: M.load(path) -> true | false, error; M.start(fd, peer, addr, port, preread) and
-- M.resume(fd) -> "done" | "wait" | "error", traceback; M.abandon(fd).
--
-- Each connection's handler runs in a coroutine of its own (the thread's async cores share
-- the state): a recv or send that cannot go on arms a wait and yields, the core suspends
-- until the socket is ready (under --async the other cores run meanwhile), and M.resume(fd)
-- goes on. Socket methods follow LuaSocket / OpenResty: nil and an error
-- ("closed", "timeout", ...) instead of raising.
local py = ...

local type, tostring, setmetatable, getmetatable = type, tostring, setmetatable, getmetatable
local co_create, co_resume, co_status, co_yield = coroutine.create, coroutine.resume, coroutine.status, coroutine.yield
local find, sub = string.find, string.sub
local traceback = debug.traceback
local recv_nb, send_nb, arm, after_wait = py.recv_nb, py.send_nb, py.arm, py.after_wait

local M = {}
local handler
local cos = {}      -- fd -> the coroutine serving that connection

local function wait(fd, write)
  while true do
    arm(fd, write)
    co_yield()
    local why = after_wait(fd)
    if why == "ready" then return nil end
    if why == "stop" then return "closed" end
    if why == "timeout" then return "timeout" end
  end
end

local Sock = {}
Sock.__index = Sock

-- up to n bytes from the socket itself, waiting for at least one
local function recv_more(fd, n)
  while true do
    local data, err = recv_nb(fd, n)
    if data then return data end
    if err ~= "again" then return nil, err end
    err = wait(fd, false)
    if err then return nil, err end
  end
end

-- up to n bytes (default 65536), waiting for at least one
function Sock:recv(n)
  n = n or 65536
  local buf = self._buf
  if buf ~= "" then
    self._buf = sub(buf, n + 1)
    return sub(buf, 1, n)
  end
  return recv_more(self.fd, n)
end

local function more(self)
  local data, err = recv_more(self.fd, 65536)
  if not data then return nil, err end
  self._buf = self._buf .. data
  return true
end

-- one line, without its "\n" (a "\r" before it is dropped too), as LuaSocket's receive("*l");
-- at the end: nil, "closed", what was left
function Sock:recvline(limit)
  limit = limit or 65536
  local from = 1        -- where "\n" may be: the bytes before were searched already
  while true do
    local buf = self._buf
    local i = find(buf, "\n", from, true)
    if i and i <= limit then
      self._buf = sub(buf, i + 1)
      local j = i - 1
      if j > 0 and sub(buf, j, j) == "\r" then j = j - 1 end
      return sub(buf, 1, j)
    end
    if #buf >= limit then return nil, "line too long" end
    from = #buf + 1
    local ok, err = more(self)
    if not ok then
      self._buf = ""
      return nil, err, buf
    end
  end
end

-- exactly n bytes; at the end: nil, "closed", what was there
function Sock:recv_exactly(n)
  while #self._buf < n do
    local ok, err = more(self)
    if not ok then
      local buf = self._buf
      self._buf = ""
      return nil, err, buf
    end
  end
  local buf = self._buf
  self._buf = sub(buf, n + 1)
  return sub(buf, 1, n)
end

-- some of data: the count sent (waiting until the peer takes some)
function Sock:send(data)
  data = tostring(data)
  if data == "" then return 0 end
  local fd = self.fd
  while true do
    local n, err = send_nb(fd, data)
    if not n then return nil, err end
    if n > 0 then return n end
    err = wait(fd, true)
    if err then return nil, err end
  end
end

-- all of data: true, or nil, error, the count sent
function Sock:sendall(data)
  data = tostring(data)
  local sent, total = 0, #data
  while sent < total do
    local n, err = self:send(sent == 0 and data or sub(data, sent + 1))
    if not n then return nil, err, sent end
    sent = sent + n
  end
  return true
end

function Sock:close() py.close(self.fd) return true end
function Sock:settimeout(seconds) py.settimeout(self.fd, seconds) return true end

function M.load(path)
  local chunk, err = loadfile(path)
  if not chunk then return false, err end
  local ok, res = xpcall(chunk, traceback)
  if not ok then return false, res end
  local t = type(res)
  if t == "table" then
    local mt = getmetatable(res)
    if type(res.run) == "function" then
      res = res.run
    elseif not (mt and type(mt.__call) == "function") then
      return false, path .. " returned a table without a run function"
    end
  elseif t ~= "function" then
    return false, path .. " must return the raw handler: a function(sock) or a table with a run function (got "
      .. t .. ")"
  end
  handler = res
  return true, nil
end

local function step(fd, co, ...)
  local ok, err = co_resume(co, ...)
  if not ok then
    cos[fd] = nil
    return "error", traceback(co, tostring(err))
  end
  if co_status(co) == "dead" then
    cos[fd] = nil
    return "done"
  end
  return "wait"
end

function M.start(fd, peer, addr, port, preread)
  local sock = setmetatable({ fd = fd, peer = peer, remote_addr = addr, remote_port = port,
                              preread = preread, _buf = "" }, Sock)
  local co = co_create(function(s) return handler(s) end)    -- a callable table too
  cos[fd] = co
  return step(fd, co, sock)
end

function M.resume(fd)
  local co = cos[fd]
  if co == nil then return "done" end
  return step(fd, co)
end

-- the connection was abandoned (the worker stopped, the core closed it): forget its coroutine
function M.abandon(fd) cos[fd] = nil end

return M
