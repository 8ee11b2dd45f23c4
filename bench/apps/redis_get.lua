-- One Redis GET per request (issue 19's Lua cosocket benchmark). The same file on both sides:
-- ours through uwsgi.tcp() (a cosocket: under --async the core waits on the loop, the
-- connection comes back from the keepalive pool), real uWSGI's lua plugin, which has no
-- cosocket, through a blocking LuaSocket client (Debian's lua-socket) kept open per process.
-- $BENCH_REDIS_PORT names the redis-server the harness started; bench:key holds the value.
local port = tonumber(os.getenv("BENCH_REDIS_PORT") or "6379")
local GET = "*2\r\n$3\r\nGET\r\n$9\r\nbench:key\r\n"

local function reply(conn)
  local head, err = conn:receive("*l")
  if not head then return nil, err end
  local n = tonumber(head:sub(2))
  if not n or n < 0 then return nil, "unexpected reply " .. head end
  local value, err2 = conn:receive(n + 2)
  if not value then return nil, err2 end
  return value:sub(1, n)
end

local get
if uwsgi and uwsgi.tcp then
  get = function()
    local r = uwsgi.tcp()
    local ok, err = r:connect("127.0.0.1", port)
    if not ok then return nil, err end
    r:send(GET)
    local value, err2 = reply(r)
    if value then r:setkeepalive(0, 64) else r:close() end
    return value, err2
  end
else
  local socket = require("socket")
  local conn
  get = function()
    if not conn then
      local err
      conn, err = socket.connect("127.0.0.1", port)
      if not conn then return nil, err end
      conn:setoption("tcp-nodelay", true)
    end
    conn:send(GET)
    local value, err = reply(conn)
    if not value then conn:close(); conn = nil end
    return value, err
  end
end

return function(wsapi_env)
  return 200, { ["Content-Type"] = "text/plain" }, coroutine.wrap(function()
    local value, err = get()
    coroutine.yield(value and ("redis says " .. value .. "\n") or ("redis error: " .. tostring(err) .. "\n"))
  end)
end
