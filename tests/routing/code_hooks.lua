-- Lua hooks of tests/routing/test_code_hooks.py: loaded by --lua-hooks, and named by
-- lua:tests/routing/code_hooks.lua:FUNCTION routes. Each phase, an answer, an error, a wait.
local M = {}

M.access = function(r)
  local uri = r.uri
  if uri:find("^/lua%-deny") then return 403 end
  if r.headers["X-Answer"] == "lua" then
    return r:answer(201, { ["X-Hook"] = "lua" }, "answered by lua\n")
  end
  if uri:find("^/lua%-redirect") then return r:redirect("/elsewhere") end
  if uri:find("^/lua%-raise") then error("lua hook failure on purpose") end
  r.ctx.lua_user = "lua-user"
  r.vars.LUA_HOOK_SEEN = "lua"
end

M.response = function(r)
  r.response_headers["X-Lua-Response"] = tostring(r.status)
  r.response_headers["X-Powered-By"] = nil
end

M.log = function(r)
  r:log(string.format("lua-log-hook status=%d sent=%d ctx=%s from_app=%s uri=%s", r.status, r.bytes_sent,
    tostring(r.ctx.lua_user or r.ctx.user), tostring(r.ctx.from_app), r.uri))
end

M.hooks = {
  lua_slow = function(r)
    uwsgi.async_sleep(tonumber(r.headers["X-Sleep"] or "1"))
    coroutine.yield()
    r.ctx.slept = "lua"
  end,
}

M.vars = {
  upper_uri = function(r) return r.uri:upper() end,
}

function M.named(r)
  return "202 Accepted", { ["X-Named"] = "lua" }, "by lua named\n"
end

return M
