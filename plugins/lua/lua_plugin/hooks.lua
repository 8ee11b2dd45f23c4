-- Lua code in every request phase (hooks.py loads this once in a lua_State, when a hook first
-- runs there): the request object a hook gets, and the runner Python drives.
-- Arguments: op(name, ...), the Python bridge over the current hook call (hooks.py's Bridge),
-- and its function names: b.NAME(...) below is op("NAME", ...).
-- Returns R:
--   R.call(kind, a, b, slot)   resolve the function (kind "ref": a = FILE.lua, b = FUNCTION;
--                              "phase"/"name"/"var": a = the --lua-hooks file, b = its key;
--                              "rpc": b = a uwsgi.register_rpc name) and run it in a coroutine:
--                              "done", v1, v2, v3 (what it returned: status or route code,
--                              flat headers, body) | "wait" (it yielded: resume later) | "error", msg
--   R.resume(slot)             the same, for the coroutine parked in slot
--   R.abandon(slot)            forget it (the client is gone)
--   R.value(kind, a, b)        a variable: its value as a string ("" for nil)
--   R.inspect(path)            what a --lua-hooks file defines: "access\0response\0log" present,
--                              then the hook names, then the variable names ("\0"-joined)
local op, names = ...
local b = {}
for _, name in ipairs(names) do b[name] = function(...) return op(name, ...) end end

local type, tostring, pairs, ipairs, setmetatable, error = type, tostring, pairs, ipairs, setmetatable, error
local concat, find = table.concat, string.find
local create, resume, status = coroutine.create, coroutine.resume, coroutine.status
local traceback = debug.traceback

local R = {}
local files = {}     -- path -> what the file returned (a table), or the globals
local parked = {}    -- slot -> coroutine of a hook that waits

local function load_file(path)
  local t = files[path]
  if t then return t end
  local chunk, err = loadfile(path)
  if not chunk then error(err, 0) end
  local res = chunk()
  if type(res) ~= "table" then res = _G end
  files[path] = res
  return res
end

-- uwsgi.register_rpc's registry (uwsgi_table.lua publishes it in package.loaded)
local function rpc_registry()
  return package.loaded["uwsgi.rpc_registry"] or {}
end

local function as_list(v)
  if type(v) == "function" then return { v } end
  if type(v) == "table" then return v end
  return {}
end

local function resolve(kind, a, key)
  if kind == "ref" then
    local f = load_file(a)[key]
    if type(f) ~= "function" then error(a .. " defines no function " .. key, 0) end
    return f
  elseif kind == "phase" then
    local list = as_list(load_file(a)[key])
    if #list == 1 then return list[1] end
    return function(r)      -- several hooks for a phase: in order, until one does not go on
      for _, f in ipairs(list) do
        local v1, v2, v3 = f(r)
        if v1 ~= nil and v1 ~= true and v1 ~= 0 then return v1, v2, v3 end
        if b.decided() then return end
      end
    end
  elseif kind == "name" or kind == "var" then
    local t = load_file(a)[kind == "name" and "hooks" or "vars"]
    local f = type(t) == "table" and t[key]
    if type(f) ~= "function" then error(a .. " has no " .. kind .. " " .. key, 0) end
    return f
  elseif kind == "rpc" then
    local f = rpc_registry()[key]
    if type(f) ~= "function" then error("no Lua rpc function " .. key, 0) end
    return f
  end
  error("unknown hook kind " .. tostring(kind), 0)
end

-- ---- the request object -------------------------------------------------------------------
local function split(flat)
  local out = {}
  if flat == nil or flat == "" then return out end
  local pos = 1
  while true do
    local z = find(flat, "\0", pos, true)
    if z == nil then out[#out + 1] = flat:sub(pos); return out end
    out[#out + 1] = flat:sub(pos, z - 1)
    pos = z + 1
  end
end

local function view(get, set, list)
  return setmetatable({}, {
    __index = function(_, k) return get(k) end,
    __newindex = function(_, k, v) set(k, v) end,
    __call = function() return list and list() end,   -- r.vars() -> { name = value, ... }
  })
end

local function vars_list()
  local out = {}
  for _, k in ipairs(split(b.var_names())) do out[k] = b.var(k) end
  return out
end

local function rh_list()
  local out, parts = {}, split(b.rh_list())
  for i = 1, #parts - 1, 2 do out[#out + 1] = { parts[i], parts[i + 1] } end
  return out
end

local vars = view(b.var, b.set_var, vars_list)
local headers = view(b.header, b.set_header)
local ctx = view(b.ctx_get, b.ctx_set)
local response_headers = view(b.rh_get, b.rh_set, rh_list)

local function flat_headers(t)
  if t == nil then return "" end
  if type(t) ~= "table" then error("headers must be a table of name = value", 3) end
  local out = {}
  for k, v in pairs(t) do
    if type(k) == "number" and type(v) == "table" then
      out[#out + 1] = tostring(v[1]); out[#out + 1] = tostring(v[2])
    elseif type(v) == "table" then
      for _, one in ipairs(v) do out[#out + 1] = k; out[#out + 1] = tostring(one) end
    else
      out[#out + 1] = k; out[#out + 1] = tostring(v)
    end
  end
  return concat(out, "\0")
end

local methods = {
  log = function(_, msg) b.log(tostring(msg)) end,
  answer = function(_, st, hdrs, body)
    if type(body) == "table" then body = concat(body) end
    return b.answer(st, flat_headers(hdrs), body ~= nil and tostring(body) or "")
  end,
  redirect = function(_, url, code) return b.redirect(url, code or 302) end,
  ["goto"] = function(_, label) return b.goto_label(label) end,
  add_response_header = function(_, name, value) b.rh_add(name, value) end,
  NEXT = 0, CONTINUE = 1, BREAK = 2,
}
local facts = { status = true, bytes_sent = true, headers_size = true, duration = true, start_time = true,
                method = true, uri = true, remote_addr = true, exception = true, phase = true }

local request = setmetatable({ vars = vars, headers = headers, ctx = ctx, response_headers = response_headers }, {
  __index = function(_, k)
    local m = methods[k]
    if m ~= nil then return m end
    if facts[k] then return b.fact(k) end
    return nil
  end,
  __newindex = function(_, k, v)
    if k == "status" then b.set_status(v) else error("request field " .. tostring(k) .. " is read-only", 2) end
  end,
})

-- ---- running ------------------------------------------------------------------------------
local function finish(co, ok, v1, v2, v3)
  if not ok then return "error", traceback(co, tostring(v1)) end
  if status(co) ~= "dead" then return "wait" end
  if type(v2) == "table" then v2 = flat_headers(v2) end
  if v3 ~= nil and type(v3) == "table" then v3 = concat(v3) end
  if v3 ~= nil then v3 = tostring(v3) end
  return "done", v1, v2, v3
end

function R.call(kind, a, key, slot)
  local ok, f = pcall(resolve, kind, a, key)
  if not ok then return "error", tostring(f) end
  local co = create(f)
  local r1, r2, r3, r4 = finish(co, resume(co, request))
  if r1 == "wait" then parked[slot] = co end
  return r1, r2, r3, r4
end

function R.resume(slot)
  local co = parked[slot]
  if co == nil then return "error", "no hook waits on this core" end
  local r1, r2, r3, r4 = finish(co, resume(co))
  if r1 ~= "wait" then parked[slot] = nil end
  return r1, r2, r3, r4
end

function R.abandon(slot) parked[slot] = nil end

function R.value(kind, a, key)
  local v = resolve(kind, a, key)(request)
  if v == nil then return "" end
  return tostring(v)
end

function R.inspect(path)
  local t = load_file(path)
  local phases, names, vnames = {}, {}, {}
  for _, p in ipairs({ "access", "response", "log" }) do
    if t[p] ~= nil then phases[#phases + 1] = p end
  end
  if type(t.hooks) == "table" then for k in pairs(t.hooks) do names[#names + 1] = tostring(k) end end
  if type(t.vars) == "table" then for k in pairs(t.vars) do vnames[#vnames + 1] = tostring(k) end end
  return concat(phases, "\0"), concat(names, "\0"), concat(vnames, "\0")
end

return R
