-- A form handled with Debian's wsapi.request / wsapi.response, counting posts in the shared
-- cache when one is configured.
--   ./uwsgi --http-socket :8080 --http-socket-modifier1 6 --lua examples/lua_form.lua --cache2 name=default,items=100
local request = require "wsapi.request"
local response = require "wsapi.response"

local page = [[<html><body>
<form method="post"><input name="name" value="%s"/><button>Send</button></form>
<p>%s</p></body></html>]]

local function escape(s)
  return (s:gsub("[&<>\"]", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;" }))
end

return function(env)
  local req = request.new(env)
  local res = response.new(200, { ["Content-Type"] = "text/html" })
  local message = "Who are you?"
  if req.method == "POST" then
    local name = req.POST.name or ""
    local count = "?"
    if uwsgi.cache_update then
      local ok, current = pcall(uwsgi.cache_get, "posts")
      if ok then
        count = tostring((tonumber(current) or 0) + 1)
        pcall(uwsgi.cache_update, "posts", count)
      end
    end
    message = "Hello " .. escape(name) .. " (post number " .. count .. ")"
  end
  res:write(string.format(page, "", message))
  return res:finish()
end
