-- The HTTP conformance corpus's Lua (WSAPI) echo app: the same output as conformance_echo.py,
-- one KEY=HEX line per CGI var of the WSAPI env (its bytes in hex), sorted, then body=HEX
-- (tests/net/test_http_conformance.py).
local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

return function(env)
  local keys = {}
  for k, v in pairs(env) do
    if type(k) == "string" and type(v) == "string" and not k:find("%l") and k ~= "APP_PATH" then
      keys[#keys + 1] = k
    end
  end
  table.sort(keys)
  local out = {}
  for _, k in ipairs(keys) do out[#out + 1] = k .. "=" .. hex(env[k]) end
  out[#out + 1] = "body=" .. hex(env.input:read() or "")
  local body, sent = table.concat(out, "\n") .. "\n", false
  return 200, { ["Content-Type"] = "text/plain" }, function()
    if sent then return nil end
    sent = true
    return body
  end
end
