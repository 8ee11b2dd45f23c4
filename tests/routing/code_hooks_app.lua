-- The WSAPI app behind the code hooks: shows what the hooks left it (env.ctx, vars).
-- An RPC function that hook:luagate calls with the request object (uwsgi.register_rpc's registry).
uwsgi.register_rpc("luagate", function(r)
  if r.headers["X-Rpc"] == "deny" then return 401 end
end)
return function(env)
  if env.PATH_INFO == "/set-ctx" then env.ctx.from_app = "lua-app-value" end
  local body = string.format("ctx.user=%s ctx.lua_user=%s ctx.slept=%s\nHOOK_SEEN=%s\nMD5=%s\nruntime=lua\n",
    tostring(env.ctx.user), tostring(env.ctx.lua_user), tostring(env.ctx.slept), env.HOOK_SEEN or "",
    env.MD5 or "")
  return 200, { ["Content-Type"] = "text/plain", ["X-Powered-By"] = "lua" }, { body }
end
