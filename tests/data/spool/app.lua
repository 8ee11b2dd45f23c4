-- The Lua half of the two-runtime spooler test: uwsgi.spooler runs the tasks of kind "lua"
-- (appending lua:ID:PID to $SPOOL_RECORDS), "lua_retry" (SPOOL_RETRY once, then done) and
-- "lua_error" (a Lua error the first time). GET /spool?kind=K&id=I spools from Lua.
local records = os.getenv("SPOOL_RECORDS")

local function record(line)
  local f = assert(io.open(records, "a"))
  f:write(line, "\n")
  f:close()
end

local seen = {}

uwsgi.spooler = function(args)
  local kind, id = args.kind, args.id
  record(kind .. ":" .. id .. ":" .. uwsgi.mypid() .. ":" .. (args.body or ""))
  if kind == "lua" then return uwsgi.SPOOL_OK end
  if kind == "lua_retry" then
    seen[id] = (seen[id] or 0) + 1
    if seen[id] < 2 then return uwsgi.SPOOL_RETRY end
    return uwsgi.SPOOL_OK
  end
  if kind == "lua_error" then
    seen[id] = (seen[id] or 0) + 1
    if seen[id] < 2 then error("lua boom " .. id) end
    return uwsgi.SPOOL_OK
  end
  return uwsgi.SPOOL_IGNORE
end

local function respond(text)
  return 200, { ["Content-Type"] = "text/plain" }, coroutine.wrap(function() coroutine.yield(text) end)
end

return function(env)
  if env.PATH_INFO == "/pid" then
    return respond(uwsgi.spooler_pid() .. "," .. #uwsgi.spooler_pids() .. "," .. tostring(uwsgi.i_am_the_spooler()))
  end
  local q = {}
  for k, v in string.gmatch(env.QUERY_STRING or "", "([^&=]+)=([^&]*)") do q[k] = v end
  if q.body then q.body = q.body .. "!" end
  return respond(uwsgi.spool(q))
end
