-- A small Redis-protocol server on the uWSGI cache, in Lua (the Python twin is raw_redis.py):
-- PING, GET, SET (with EX seconds), DEL and QUIT, enough for redis-cli and the `redis` package.
--
--   ./uwsgi --raw-socket 127.0.0.1:6381 --raw-modifier1 6 --lua-raw examples/raw_redis.lua \
--           --cache2 name=redis,items=1000,blocksize=65536 --async 16
--   redis-cli -p 6381 set greeting hello && redis-cli -p 6381 get greeting
--
-- Parsing is strict and small: RESP arrays of bulk strings (what clients send) and inline
-- commands (a line of words); anything else is answered with an -ERR line and the connection
-- is closed, as Redis does on a protocol error. An unknown command or a wrong argument count
-- is an -ERR line and the connection goes on. (sock:recvline drops the line's CR, as
-- LuaSocket's does: a header line ending in a bare LF is accepted; a bulk string must still be
-- followed by CRLF.)

local CACHE = "redis"
local MAX_ARGS, MAX_BULK, MAX_LINE = 16, 64 * 1024, 64 * 1024

local function protocol_error(text) error({ protocol = text }, 0) end

local function count(text, limit, what)
  local n = text:match("^%d+$") and tonumber(text)
  if not n or n > limit then protocol_error("invalid " .. what) end
  return n
end

local function line(sock)
  local l, err = sock:recvline(MAX_LINE)
  if not l and err == "line too long" then protocol_error("too big inline request") end
  return l
end

-- the next command's words; nil when the client is gone
local function read_command(sock)
  local l = line(sock)
  if not l then return nil end
  if l:sub(1, 1) ~= "*" then
    local words = {}
    for w in l:gmatch("%S+") do words[#words + 1] = w end
    return words
  end
  local args = {}
  for i = 1, count(l:sub(2), MAX_ARGS, "multibulk length") do
    local head = line(sock)
    if not head then return nil end
    if head:sub(1, 1) ~= "$" then protocol_error("expected '$', got '" .. head:sub(1, 1) .. "'") end
    local size = count(head:sub(2), MAX_BULK, "bulk length")
    local data = sock:recv_exactly(size + 2)
    if not data then return nil end
    if data:sub(-2) ~= "\r\n" then protocol_error("expected CRLF after a bulk string") end
    args[i] = data:sub(1, -3)
  end
  return args
end

local function bulk(value)
  if value == nil then return "$-1\r\n" end
  return "$" .. #value .. "\r\n" .. value .. "\r\n"
end

local function err(text) return "-ERR " .. text .. "\r\n" end

local function execute(args)
  local name, n = args[1]:upper(), #args
  if name == "PING" and n <= 2 then
    return n == 1 and "+PONG\r\n" or bulk(args[2])
  elseif name == "GET" and n == 2 then
    return bulk(uwsgi.cache_get(args[2], CACHE))
  elseif name == "SET" and (n == 3 or n == 5) then
    local expires = 0
    if n == 5 then
      expires = args[5]:match("^%d+$") and tonumber(args[5])
      if args[4]:upper() ~= "EX" or not expires or expires < 1 then return err("syntax error") end
    end
    if not uwsgi.cache_update(args[2], args[3], expires, CACHE) then
      return err("the value does not fit in the cache")
    end
    return "+OK\r\n"
  elseif name == "DEL" and n >= 2 then
    local deleted = 0
    for i = 2, n do
      if uwsgi.cache_del(args[i], CACHE) then deleted = deleted + 1 end
    end
    return ":" .. deleted .. "\r\n"
  elseif name == "PING" or name == "GET" or name == "SET" or name == "DEL" then
    return err("wrong number of arguments for '" .. name:lower() .. "' command")
  end
  return err("unknown command '" .. args[1]:sub(1, 64) .. "'")
end

return function(sock)
  while true do
    local ok, args = pcall(read_command, sock)
    if not ok then
      if type(args) == "table" and args.protocol then
        sock:sendall(err("Protocol error: " .. args.protocol))
        return
      end
      error(args, 0)
    end
    if args == nil then return end
    if #args > 0 then
      if args[1]:upper() == "QUIT" then
        sock:sendall("+OK\r\n")
        return
      end
      sock:sendall(execute(args))
    end
  end
end
