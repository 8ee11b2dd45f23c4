-- The scaling-curve app: each request waits 50 ms without holding its core
-- (uwsgi.async_sleep, then the body iterator yields to suspend the core), then answers.
-- Real uWSGI's lua plugin takes whole seconds here (0.05 truncates to 0, no wait), so the
-- curve is measured on our server only.
return function(wsapi_env)
  local function body()
    uwsgi.async_sleep(0.05)
    coroutine.yield()
    coroutine.yield("slept 50ms\n")
  end
  return 200, { ["Content-Type"] = "text/plain" }, coroutine.wrap(body)
end
