-- A Lua mule for the shared-services demo: ./uwsgi ... --mule examples/services_mule.lua
-- It stores the messages it gets in the cache and counts signal 26 (target "mule<N>": this one).
local me = uwsgi.mule_id()
uwsgi.register_signal(26, "mule" .. me, function(sig) uwsgi.cache_inc("lua_mule_signals_" .. me) end)
uwsgi.cache_update("lua_mule_ready", tostring(me))
while true do
  local msg = uwsgi.mule_get_msg()
  uwsgi.cache_update("lua_mule_last", msg)
end
