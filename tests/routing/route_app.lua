-- The WSAPI app of the routing tests: answers the request vars the routes may have changed.
return function(env)
  local keys = { "PATH_INFO", "QUERY_STRING", "REMOTE_USER", "ROUTED", "SCRIPT_NAME", "REQUEST_METHOD",
                 "UWSGI_SCHEME", "COUNT", "CACHED" }
  local out = {}
  for _, k in ipairs(keys) do out[#out + 1] = k .. "=" .. (env[k] or "") end
  out[#out + 1] = "runtime=lua"
  local body = table.concat(out, "\n") .. "\n"
  return 200, { ["Content-Type"] = "text/plain", ["X-Powered-By"] = "lua", ["X-App"] = "1" },
    coroutine.wrap(function() coroutine.yield(body) end)
end
