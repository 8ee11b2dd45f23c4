-- The Lua half of the shared-services demo (the Python half is examples/services_app.py, with
-- the same endpoints): a value set here is read there byte for byte, each side calls the
-- other's RPC functions, and timers fire handlers of both runtimes in chosen workers.
--   ./uwsgi --ini examples/services.ini

local CACHE = os.getenv("SERVICES_CACHE")   -- nil = the default (first) cache
if CACHE == "" then CACHE = nil end

uwsgi.register_rpc("lua_concat", function(...)
  return table.concat({...}, "+")
end)

uwsgi.register_rpc("lua_fail", function(...)
  error("lua says no: " .. table.concat({...}, ","))
end)

-- signal 22, every second, for worker 2
uwsgi.register_signal(22, "worker2", function(sig)
  uwsgi.cache_update("lua_timer", uwsgi.worker_id() .. ":" .. sig, 0, CACHE)
  uwsgi.cache_inc("lua_timer_count", 1, 0, CACHE)
end)
uwsgi.add_timer(22, 1)

uwsgi.register_signal(24, "workers", function(sig)
  uwsgi.cache_inc("lua_bcast_w" .. uwsgi.worker_id(), 1, 0, CACHE)
end)

local function unescape(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function parse_query(qs)
  local first, all = {}, {}
  for pair in string.gmatch(qs or "", "[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k, v = unescape(k), unescape(v)
    if first[k] == nil then first[k] = v end
    all[k] = all[k] or {}
    table.insert(all[k], v)
  end
  return first, all
end

local function reply(status, body)
  body = tostring(body)
  local headers = { ["Content-Type"] = "text/plain", ["Content-Length"] = tostring(#body) }
  return status, headers, coroutine.wrap(function() coroutine.yield(body) end)
end

local function bool(v) if v then return "True" else return "False" end end

local ops = {}

function ops.get(q)
  local v = uwsgi.cache_get(q.k, CACHE)
  if v == nil then return reply(404, "") end
  return reply(200, v)
end
function ops.set(q) return reply(200, bool(uwsgi.cache_set(q.k, q.v or "", tonumber(q.e or 0), CACHE))) end
function ops.update(q) return reply(200, bool(uwsgi.cache_update(q.k, q.v or "", tonumber(q.e or 0), CACHE))) end
function ops.del(q) return reply(200, bool(uwsgi.cache_del(q.k, CACHE))) end
function ops.inc(q)
  for _ = 1, tonumber(q.n or 1) do
    if not uwsgi.cache_inc(q.k, 1, 0, CACHE) then return reply(500, "cache_inc failed") end
  end
  return reply(200, "ok")
end
function ops.num(q) return reply(200, tostring(uwsgi.cache_num(q.k, CACHE))) end
function ops.setbig(q) return reply(200, bool(uwsgi.cache_update(q.k, string.rep("x", tonumber(q.size)), 0, CACHE))) end
function ops.setbin(q)
  local t = {}
  for i = 0, 255 do t[#t + 1] = string.char(i) end
  return reply(200, bool(uwsgi.cache_update(q.k, table.concat(t), 0, CACHE)))
end

local function call(q, all, node)
  local args = all.a or {}
  local ok, res
  if node then
    ok, res = pcall(uwsgi.rpc, node, q.f, unpack(args))
  else
    ok, res = pcall(uwsgi.rpc, "", q.f, unpack(args))
  end
  if not ok then return reply(500, "RpcError: " .. tostring(res)) end
  if res == nil then return reply(404, "no such rpc function") end
  return reply(200, res)
end
function ops.call(q, all) return call(q, all, nil) end
function ops.rpc(q, all) return call(q, all, q.node) end

function ops.signal(q)
  uwsgi.signal(tonumber(q.n))
  return reply(200, "raised")
end

local function now() return uwsgi.micros() / 1e6 end   -- wall clock, comparable across processes

function ops.lock(q)
  local n = tonumber(q.n or 0)
  uwsgi.lock(n)
  local ok, got, released = pcall(function()
    local t0 = now()
    local hold = tonumber(q.hold or 0)
    while now() < t0 + hold do end   -- hold it (plain Lua has no sleep)
    return t0, now()
  end)
  uwsgi.unlock(n)                   -- whatever happened, never leave the lock held
  if not ok then error(got) end
  return reply(200, string.format("%.6f %.6f", got, released))
end

function ops.metric(q)
  if q.op == "inc" then uwsgi.metric_inc(q.name, tonumber(q.v or 1))
  elseif q.op == "dec" then uwsgi.metric_dec(q.name, tonumber(q.v or 1))
  elseif q.op == "set" then uwsgi.metric_set(q.name, tonumber(q.v)) end
  return reply(200, tostring(uwsgi.metric_get(q.name)))
end

function ops.mule_msg(q)
  return reply(200, bool(uwsgi.mule_msg(q.v or "", tonumber(q.mule))))
end

function ops.wid() return reply(200, tostring(uwsgi.worker_id())) end

return function(env)
  local op = (env.PATH_INFO or "/"):gsub("/+$", ""):match("([^/]*)$")
  local q, all = parse_query(env.QUERY_STRING)
  local fn = ops[op]
  if fn == nil then return reply(404, "unknown operation " .. op .. "\n") end
  return fn(q, all)
end
