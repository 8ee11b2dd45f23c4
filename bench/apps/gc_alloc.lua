-- The GC bench app (bench/memory.py, memory-lua-gc): every request builds a table of 100 new
-- strings (unique per request, so none is shared through Lua's string interning) and drops it,
-- leaving about 10 KB of garbage per request. With --lua-gc-freq N the state's memory must stay
-- flat however many requests it serves.
local served = 0

return function(wsapi_env)
  served = served + 1
  local garbage = {}
  for i = 1, 100 do
    garbage[i] = string.format("request %d, string %d, path %s", served, i, wsapi_env.PATH_INFO)
  end
  local function body()
    coroutine.yield(#garbage .. " strings allocated\n")
  end
  return 200, { ["Content-Type"] = "text/plain" }, coroutine.wrap(body)
end
