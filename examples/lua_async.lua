-- Async streaming with the uwsgi module: each request sleeps without blocking its worker.
--   ./uwsgi --http-socket :8080 --http-socket-modifier1 6 --lua examples/lua_async.lua --async 8
-- Eight concurrent requests to /?n=3 take about 1.5 s together on one worker, not 12 s.
return function(env)
  local n = tonumber((env.QUERY_STRING or ""):match("n=(%d+)")) or 3
  if n > 20 then n = 20 end
  local headers = { ["Content-Type"] = "text/plain" }
  return 200, headers, coroutine.wrap(function()
    coroutine.yield("core " .. uwsgi.async_id() .. " of worker " .. uwsgi.mywid .. "\n")
    for i = 1, n do
      uwsgi.async_sleep(0.5)
      coroutine.yield()            -- suspends this core until the sleep is over
      coroutine.yield(string.format("tick %d at %.0f us\n", i, uwsgi.micros()))
    end
  end)
end
