-- The WSAPI app of the routing tests: answers the request vars the routes may have changed.
return function(env)
  if env.PATH_INFO == "/app" then    -- for --collect-header / --pull-header
    return 200, { ["Content-Type"] = "text/plain", ["X-Tag"] = "abc", ["X-Pull"] = "zz", ["X-App"] = "1" },
      coroutine.wrap(function() coroutine.yield("app") end)
  end
  local keys = { "PATH_INFO", "QUERY_STRING", "REMOTE_USER", "ROUTED", "SCRIPT_NAME", "REQUEST_METHOD",
                 "UWSGI_SCHEME", "COUNT", "CACHED" }
  for k in string.gmatch(env.HTTP_X_SHOW or "", "[^,]+") do keys[#keys + 1] = k end  -- what a test asks to see
  local out = {}
  for _, k in ipairs(keys) do out[#out + 1] = k .. "=" .. (env[k] or "") end
  out[#out + 1] = "runtime=lua"
  local body = table.concat(out, "\n") .. "\n"
  return 200, { ["Content-Type"] = "text/plain", ["X-Powered-By"] = "lua", ["X-App"] = "1" },
    coroutine.wrap(function() coroutine.yield(body) end)
end
