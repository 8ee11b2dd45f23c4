-- The LuaJIT back end of uwsgi.tcp() (see cosocket.lua): send, receive, the read buffer and the
-- keepalive pool in Lua over libc (the FFI), on non-blocking fds that cosocket.py opened.
-- Run by cosocket.lua with (ops, arm, cooperative, slot_calls, core_id, at_turn_end); returns its
-- back-end table, or raises
-- (no FFI, a declaration refused) and cosocket.lua keeps the Python operations.
--
-- Python still does, once per new connection: the name resolution (in a thread, the core
-- waiting), the non-blocking connect, registering the fd with the core's loop (kept between
-- waits: no epoll_ctl per wait); and, once per closed connection, unregistering and closing it
-- (ops.release). What a request does with a pooled connection crosses to Python once: the read
-- wait (its core and which request of it are runtime.lua's slot_calls, read in Lua); and once
-- per loop turn, whatever the number of requests in it, the flush of the sends held meanwhile
-- (see "held sends").
--
-- Lifetimes: a socket a request leaves open is closed when its core's next request calls
-- uwsgi.tcp() (the sockets are listed per core). Pooled connections wait here, one pool per
-- lua_State = per thread (shared by the thread's async cores), keyed "host:port" or
-- "unix:PATH", at most `size` idle ones per key (the least recently used closed to make room),
-- each for at most `timeout` ms (0 = no limit); one the peer closed or wrote to is dropped when
-- it would be taken (a MSG_PEEK).
local ops, arm, cooperative, slot_calls, core_id, at_turn_end = ...

local ffi = require("ffi")
local C = ffi.C
local errno, ffi_string, cast = ffi.errno, ffi.string, ffi.cast
local find, sub, gsub, lower = string.find, string.sub, string.gsub, string.lower
local concat = table.concat
local ceil = math.ceil
local co_yield = coroutine.yield
local op_open, op_resume, op_release, op_later = ops.open, ops.resume, ops.release, ops.later

-- Private names (asm labels): an app's own cdef of recv or poll cannot clash with these.
ffi.cdef [[
  int uwsgi_cosocket_send(int fd, const char *buf, size_t len, int flags) __asm__("send");
  int uwsgi_cosocket_recv(int fd, char *buf, size_t len, int flags) __asm__("recv");
  struct uwsgi_cosocket_pollfd { int fd; short events; short revents; };
  int uwsgi_cosocket_poll(struct uwsgi_cosocket_pollfd *fds, unsigned long n, int timeout) __asm__("poll");
  const char *uwsgi_cosocket_strerror(int errnum) __asm__("strerror");
  struct uwsgi_cosocket_timespec { long tv_sec; long tv_nsec; };
  int uwsgi_cosocket_clock_gettime(int clock, struct uwsgi_cosocket_timespec *ts) __asm__("clock_gettime");
]]
local c_send, c_recv, c_poll = C.uwsgi_cosocket_send, C.uwsgi_cosocket_recv, C.uwsgi_cosocket_poll
local c_strerror, c_clock = C.uwsgi_cosocket_strerror, C.uwsgi_cosocket_clock_gettime

-- the platform's numbers, from Python (errno, socket and select modules)
local K = ops.consts
local EAGAIN, EWOULDBLOCK, EINTR = K.EAGAIN, K.EWOULDBLOCK, K.EINTR
local MSG_PEEK_NOW, MSG_NOSIGNAL = K.MSG_PEEK + K.MSG_DONTWAIT, K.MSG_NOSIGNAL
local POLLIN, POLLOUT, CLOCK = K.POLLIN, K.POLLOUT, K.CLOCK_MONOTONIC

local RECV_SIZE = 65536
local SEND_MAX = 1073741824       -- bytes per send(2): its int result stays exact
local SMALL = 262144              -- a receive gathers up to this in one string, then in parts
local DEFAULT_TIMEOUT = 60        -- seconds: OpenResty's lua_socket_{connect,send,read}_timeout
local DEFAULT_KEEPALIVE = 60000   -- ms: lua_socket_keepalive_timeout
local DEFAULT_POOL_SIZE = 30      -- lua_socket_pool_size
local LINE, ALL, COUNT = 0, 1, 2
local POLL_MAX = 2147483647       -- ms: poll(2)'s int

-- one buffer and one pollfd per state: one thread runs it, and no call yields while using them
local rbuf = ffi.new("char[?]", RECV_SIZE)
local pfd = ffi.new("struct uwsgi_cosocket_pollfd[1]")
local ts = ffi.new("struct uwsgi_cosocket_timespec")

local function now()
  c_clock(CLOCK, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local function strerror(e)
  return lower(ffi_string(c_strerror(e)))
end

-- ---- waiting ------------------------------------------------------------------------------------
-- Until fd is ready (true) or the deadline (false; `false` deadline = no limit). Cooperative:
-- only this core suspends (the trampoline resumes it when the wait fired); else poll(2).
local function wait(fd, writing, deadline)
  local left = 0
  if deadline then
    left = deadline - now()
    if left <= 0 then return false end
    if left < 0.001 then left = 0.001 end
  end
  if cooperative() then
    arm(fd, writing, left)
    co_yield()
  else
    local p = pfd[0]
    p.fd, p.events, p.revents = fd, writing and POLLOUT or POLLIN, 0
    local ms = deadline and ceil(left * 1000) or -1
    c_poll(pfd, 1, ms < POLL_MAX and ms or POLL_MAX)
  end
  return true
end

local function deadline_of(seconds)
  return seconds and now() + seconds or false
end

-- ---- sockets of a core's requests -----------------------------------------------------------------
-- core id -> the sockets with a connection its current request made (closed ones pruned when
-- the list grows) / that request's number (slot_calls[core] then)
local by_core, core_seq = {}, {}
local LIST_MIN = 16

local function drop(s)
  local fd = s.fd
  s.fd, s.buf, s.wbuf = -1, "", nil
  if fd >= 0 then op_release(fd) end
end

local function new()
  local core = core_id()
  local seq = slot_calls[core] or 0
  local list = by_core[core]
  if list == nil then
    list = { limit = LIST_MIN }
    by_core[core] = list
    core_seq[core] = seq
  elseif core_seq[core] ~= seq then
    -- this core's earlier request is over: what it left open is closed now (what it still
    -- held goes out first: that request may have ended in this loop turn, before the flush)
    for i = #list, 1, -1 do
      local s = list[i]
      if s.fd >= 0 then
        local w = s.wbuf
        if w ~= nil then c_send(s.fd, w, #w, MSG_NOSIGNAL) end
        drop(s)
      end
      s.listed = false
      list[i] = nil
    end
    list.limit = LIST_MIN
    core_seq[core] = seq
  end
  return { fd = -1, buf = "", key = false, reused = 0, list = list, listed = false,
           ct = DEFAULT_TIMEOUT, st = DEFAULT_TIMEOUT, rt = DEFAULT_TIMEOUT }
end

-- s has a connection now: on its request's list (a request opening and closing many keeps it short)
local function listed(s)
  if s.listed then return end
  local list = s.list
  local n = #list + 1
  list[n] = s
  s.listed = true
  if n > list.limit then
    local k = 0
    for i = 1, n do
      local x = list[i]
      list[i] = nil
      if x.fd >= 0 then
        k = k + 1
        list[k] = x
      else
        x.listed = false
      end
    end
    list.limit = k * 2 > LIST_MIN and k * 2 or LIST_MIN
  end
end

-- ---- the keepalive pool ------------------------------------------------------------------------------
-- pools[key] = { size = N, n = count, fds = {}, expires = {}, reused = {} }: 1 = least recently used
local pools = {}

local function alive(fd)
  -- nothing to read (EAGAIN) is the good answer: not closed, nothing unsolicited
  return c_recv(fd, rbuf, 1, MSG_PEEK_NOW) < 0 and errno() == EAGAIN
end

local function evict_oldest(p)
  op_release(p.fds[1])
  table.remove(p.fds, 1)
  table.remove(p.expires, 1)
  table.remove(p.reused, 1)
  p.n = p.n - 1
end

local function checkout(key)
  local p = pools[key]
  if p == nil then return nil end
  local fds, expires, reused = p.fds, p.expires, p.reused
  local n = p.n
  local t
  while n > 0 do
    local fd, exp, r = fds[n], expires[n], reused[n]
    fds[n], expires[n], reused[n] = nil, nil, nil
    n = n - 1
    p.n = n
    if exp ~= 0 then t = t or now() end
    if (exp == 0 or t < exp) and alive(fd) then return fd, r end
    op_release(fd)
  end
  return nil
end

local function checkin(key, fd, timeout_ms, size, reused)
  local p = pools[key]
  if p == nil then   -- the size is fixed when the pool is made (OpenResty's)
    p = { size = size, n = 0, fds = {}, expires = {}, reused = {} }
    pools[key] = p
  end
  local t = timeout_ms > 0 and now() or nil
  local exp = t and t + timeout_ms / 1000 or 0
  while p.n >= p.size do evict_oldest(p) end
  local e1 = p.expires[1]
  if e1 ~= nil and e1 ~= 0 and e1 <= (t or now()) then
    evict_oldest(p)   -- the oldest one's time is up: closed now, not when a checkout finds it
  end
  local n = p.n + 1
  p.fds[n], p.expires[n], p.reused[n] = fd, exp, reused
  p.n = n
end

-- ---- sending ----------------------------------------------------------------------------------
-- data out on s now, waiting (cooperatively or in poll) while the socket is full
local function send_all(s, data)
  local fd = s.fd
  local len, off = #data, 0
  local ptr, deadline
  while off < len do
    local chunk = len - off
    if chunk > SEND_MAX then chunk = SEND_MAX end
    local n
    if off == 0 then
      n = c_send(fd, data, chunk, MSG_NOSIGNAL)
    else
      ptr = ptr or cast("const char *", data)
      n = c_send(fd, ptr + off, chunk, MSG_NOSIGNAL)
    end
    if n >= 0 then
      off = off + n
    else
      local e = errno()
      if e == EAGAIN or e == EWOULDBLOCK then
        if deadline == nil then deadline = deadline_of(s.st) end
        if not wait(fd, true, deadline) then return nil, "timeout" end
        if s.fd ~= fd then return nil, s.werr or "closed" end
      elseif e ~= EINTR then
        drop(s)
        return nil, strerror(e)
      end
    end
  end
  return len
end

-- ---- held sends ---------------------------------------------------------------------------------
-- Under --async a small send is held until the end of the loop turn; then the turn's held sends
-- go out back to back (flush): a backend (Redis) is woken once for the requests of a turn
-- rather than once per request, and the receive that follows skips the recv that could not
-- succeed yet. A flush that cannot write everything (the peer does not read) tries again 1 ms
-- later; an error closes the socket, and the receive waiting on it returns that error.
local HOLD_MAX = 4096             -- bytes held per socket; a larger send goes out at once
local RETRY = 0.001               -- seconds: a flush's next try when a socket was full
local held, nheld, flush_armed = {}, 0, false

local function flush()
  flush_armed = false
  local list, n = held, nheld
  held, nheld = {}, 0
  for i = 1, n do
    local s = list[i]
    local data = s.wbuf
    if data ~= nil and s.fd >= 0 then
      local r = c_send(s.fd, data, #data, MSG_NOSIGNAL)
      if r == #data then
        s.wbuf = nil
      elseif r >= 0 then
        s.wbuf = sub(data, r + 1)
      else
        local e = errno()
        if e ~= EAGAIN and e ~= EWOULDBLOCK and e ~= EINTR then
          s.werr = strerror(e)
          drop(s)
        end
      end
      if s.wbuf ~= nil then
        nheld = nheld + 1
        held[nheld] = s
      end
    end
  end
  -- (if no loop takes it, the rest goes with the next hold's flush)
  if nheld > 0 then flush_armed = op_later(RETRY) end
end
at_turn_end(flush)    -- what op_later() schedules (runtime.lua's M.turn_end runs it)

-- false: no loop to flush at the end of its turn (the caller sends now)
local function hold(s, data)
  if not flush_armed then
    flush_armed = op_later()
    if not flush_armed then return false end
  end
  local w = s.wbuf
  if w == nil then
    s.wbuf = data
    nheld = nheld + 1
    held[nheld] = s
  else
    s.wbuf = w .. data
  end
  return true
end

-- what s holds, out now (before it waits for a reply in place, goes to the pool or closes)
local function unhold(s)
  local data = s.wbuf
  if data == nil then return true end
  s.wbuf = nil
  return send_all(s, data)
end

-- ---- the operations --------------------------------------------------------------------------------
local B = {}

B.new = new

function B.connect(s, host, port)
  if s.fd >= 0 then                   -- connecting again closes the current connection
    unhold(s)
    drop(s)
  end
  s.werr = nil
  local key
  if sub(host, 1, 5) == "unix:" then
    key = host
  elseif port == nil then
    return nil, "missing the port number"
  else
    key = host .. ":" .. port
  end
  local fd, reused = checkout(key)
  if fd ~= nil then
    s.fd, s.key, s.reused, s.buf = fd, key, reused + 1, ""
    listed(s)
    return 1
  end
  -- a new connection: Python opens it (false, fd, writing, seconds left, id: wait, then resume)
  local coop = cooperative()
  local r1, r2, r3, r4, id = op_open(host, port, s.ct or 0, coop)
  while r1 == false do
    arm(r2, r3, r4)
    co_yield()
    r1, r2, r3, r4 = op_resume(id, coop)
  end
  if r1 == nil then return nil, r2 end
  s.fd, s.key, s.reused, s.buf = r1, key, 0, ""
  listed(s)
  return 1
end

function B.send(s, data)
  if s.fd < 0 then return nil, "closed" end
  local len = #data
  if len <= HOLD_MAX and (s.wbuf == nil or #s.wbuf + len <= HOLD_MAX) and cooperative() and hold(s, data) then
    return len
  end
  local ok, err = unhold(s)
  if not ok then return nil, err end
  return send_all(s, data)
end

-- The data `kind` asks for at the start of `whole` (the rest kept in s.buf), or nil (all kept).
local function take(s, whole, kind, want)
  if kind == LINE then
    local i = find(whole, "\n", 1, true)
    if i == nil then
      s.buf = whole
      return nil
    end
    local line = sub(whole, 1, i - 1)
    s.buf = sub(whole, i + 1)
    if find(line, "\r", 1, true) then line = gsub(line, "\r", "") end   -- every CR, as LuaSocket's *l
    return line
  elseif kind == COUNT and #whole >= want then
    s.buf = sub(whole, want + 1)
    return sub(whole, 1, want)
  end
  s.buf = whole
  return nil
end

function B.receive(s, kind, want)
  local fd = s.fd
  if fd < 0 then return nil, "closed" end
  local acc = s.buf                -- what is gathered: one string while small, then parts
  if acc ~= "" or (kind == COUNT and want == 0) then
    local data = take(s, acc, kind, want)
    if data ~= nil then return data end
  end
  -- A recv before any wait: it finds the reply when the backend was quick. Not after a held
  -- send: that goes out at the end of this loop turn, no reply can be there yet.
  local parts, np, have = nil, 0, #acc
  local deadline
  local no_recv = false
  if s.wbuf ~= nil then
    if cooperative() then
      no_recv = true
    else
      local ok, err = unhold(s)
      if not ok then return nil, err end
    end
  end
  while true do
    local n
    if no_recv then
      no_recv, n = false, -2    -- taken for EAGAIN below
    else
      n = c_recv(fd, rbuf, RECV_SIZE, 0)
    end
    if n > 0 then
      local chunk = ffi_string(rbuf, n)
      have = have + n
      if parts then
        np = np + 1
        parts[np] = chunk
      elseif have > SMALL then
        parts, np = { acc, chunk }, 2
      else
        acc = acc .. chunk
      end
      if (kind == LINE and find(chunk, "\n", 1, true)) or (kind == COUNT and have >= want) then
        if parts then acc, parts = concat(parts, "", 1, np), nil end
        local data = take(s, acc, kind, want)
        if data ~= nil then return data end
      end
    elseif n == 0 then
      local partial = parts and concat(parts, "", 1, np) or acc
      drop(s)
      if kind == ALL then return partial end
      return nil, "closed", partial
    else
      local e = n == -2 and EAGAIN or errno()
      if e == EAGAIN or e == EWOULDBLOCK then
        if deadline == nil then deadline = deadline_of(s.rt) end
        if not wait(fd, false, deadline) then
          s.buf = ""
          return nil, "timeout", parts and concat(parts, "", 1, np) or acc
        end
        if s.fd ~= fd then return nil, s.werr or "closed" end   -- closed under it while waiting
      elseif e ~= EINTR then
        local partial = parts and concat(parts, "", 1, np) or acc
        drop(s)
        return nil, strerror(e), partial
      end
    end
  end
end

local function secs(ms) return ms > 0 and ms / 1000 or false end   -- 0: no limit

function B.settimeouts(s, connect_ms, send_ms, read_ms)
  s.ct, s.st, s.rt = secs(connect_ms), secs(send_ms), secs(read_ms)
end

function B.close(s)
  if s.fd < 0 then return nil, "closed" end
  unhold(s)
  drop(s)
  return 1
end

function B.setkeepalive(s, timeout_ms, size)
  local fd = s.fd
  if fd < 0 then return nil, "closed" end
  if s.buf ~= "" then return nil, "connection in dubious state" end
  local ok, err = unhold(s)
  if not ok then return nil, err end
  s.fd = -1
  checkin(s.key, fd, timeout_ms or DEFAULT_KEEPALIVE, size or DEFAULT_POOL_SIZE, s.reused)
  return 1
end

function B.getreusedtimes(s)
  if s.fd < 0 then return nil, "closed" end
  return s.reused
end

return B
