-- The Sputnik wiki (Debian's `sputnik` package) as a WSAPI app, stored in SQLite
-- (versium.sqlite3 over Debian's lua-sql-sqlite3): uWSGI's Lua docs example, adapted.
--
--   scripts/setup-sputnik.sh            # creates the data dir and the database once
--   ./uwsgi --http-socket :8080 --http-socket-modifier1 6 --lua examples/sputnik.ws --threads 20
--   ./uwsgi --http-socket :8080 --http-socket-modifier1 6 --lua examples/sputnik.ws -p 2 --async 4
--
-- Where the data lives: $SPUTNIK_DIR (default ${TMPDIR:-/tmp}/uwsgid-sputnik-USER, USER being
-- $USER, else `id -un`, else the uid: the same as scripts/setup-sputnik.sh): sputnik.db (the
-- wiki) and nothing else; never the source tree. One database shared by every lua_State,
-- thread and worker (SQLite locks it; the default filedir storage could not be shared).

-- Shims: Sputnik 12.06 was written against Lua modules that set globals when required;
-- Debian's newer lua-sql, lua-md5 and lua-wsapi return their module table instead.
--   luasql  versium.sqlite3 calls luasql.sqlite3() after require("luasql.sqlite3")
--   md5     sputnik calls md5.sumhexa() after require("md5")
--   wsapi   sputnik.wsapi_app calls wsapi.request.new / wsapi.response.new and sputnik
--           uses wsapi.util after require("wsapi.request") etc.
luasql = require "luasql.sqlite3"
md5 = require "md5"
wsapi = require "wsapi"
wsapi.request = require "wsapi.request"
wsapi.response = require "wsapi.response"
wsapi.util = require "wsapi.util"

-- LuaJIT (the default engine) rejects the escape "\_" that Lua 5.1 reads as "_", in
-- sputnik/markup/markdown.lua line 21: load that one module with the escape spelled as 5.1
-- reads it (same behaviour), from Debian's file, unchanged on disk.
if jit then
  package.preload["sputnik.markup.markdown"] = function(...)
    local path = assert(package.searchpath("sputnik.markup.markdown", package.path))
    local f = assert(io.open(path, "rb"))
    local src = f:read("*a")
    f:close()
    src = src:gsub('"\\_"', '"_"')
    return assert(loadstring(src, "@" .. path))(...)
  end
end

-- Under LuaJIT pcall/xpcall are coroutine-safe, so coxpcall.lua makes coxpcall = xpcall, and
-- xpcall keeps only the first value the handler returns: sputnik's error page (status,
-- headers, body from its handler) would lose its headers. Run the handler after the
-- unwinding instead, returning all its values, as coxpcall's Lua 5.1 version does.
require "coxpcall"
if coxpcall == xpcall then
  local unpack = unpack or table.unpack
  local function pack(...) return { n = select("#", ...), ... } end
  coxpcall = function(f, handler)
    local r = pack(xpcall(f, debug.traceback))
    if r[1] then return unpack(r, 1, r.n) end
    return false, handler(r[2])
  end
end

-- The default data dir, derived exactly as scripts/setup-sputnik.sh derives it (an empty
-- variable counts as unset, as ${VAR:-...} does there).
local function getenv(name)
  local v = os.getenv(name)
  if v ~= nil and v ~= "" then return v end
end
local function user_name()
  local user = getenv("USER")
  if user then return user end
  local p = io.popen("id -un 2>/dev/null || id -u")
  if p then
    user = p:read("*l")
    p:close()
  end
  return assert(user and user ~= "" and user, "sputnik.ws: no $USER and `id -un` / `id -u` failed: set SPUTNIK_DIR")
end
local dir = getenv("SPUTNIK_DIR")
if not dir then
  dir = (getenv("TMPDIR") or "/tmp"):gsub("/$", "") .. "/uwsgid-sputnik-" .. user_name()
end
-- the set-up script creates it; make it here too (one level) so that a first run just works
local has_lfs, lfs = pcall(require, "lfs")
if has_lfs and not lfs.attributes(dir) then lfs.mkdir(dir) end

require "sputnik"

return sputnik.wsapi_app.new {
  VERSIUM_STORAGE_MODULE = "versium.sqlite3",
  -- the second parameter is luasql's SQLite busy timeout (ms): writers wait for each other
  VERSIUM_PARAMS = { dir .. "/sputnik.db", 10000 },
  SHOW_STACK_TRACE = true,
  TOKEN_SALT = os.getenv("SPUTNIK_TOKEN_SALT") or "uwsgid-sputnik-example-salt",
  BASE_URL = "/",
  USE_NICE_URLS = false,
}
