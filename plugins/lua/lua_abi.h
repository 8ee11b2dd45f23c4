/* The part of the Lua C API that uwsgi_native.c uses, declared here for the two ABIs lupa's
 * engines have: ULUA_ABI 501 (Lua 5.1 and LuaJIT 2.0/2.1) and 504 (Lua 5.4).
 *
 * Why not lua.h: lupa links its Lua statically into each engine extension and ships no headers,
 * and a machine with lupa need not have any Lua's -dev package. These declarations are copied
 * from the official headers of those versions (types, constants and the macros we use); the
 * functions are resolved at dlopen time against the engine lupa loaded with RTLD_GLOBAL
 * (lua_plugin/engine.py), one engine per process. */
#ifndef ULUA_ABI_H
#define ULUA_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifndef ULUA_ABI
#error "define ULUA_ABI: 501 (Lua 5.1, LuaJIT) or 504 (Lua 5.4)"
#endif

typedef struct lua_State lua_State;
typedef int (*lua_CFunction)(lua_State *L);
typedef double lua_Number;

#define LUA_MULTRET (-1)
#define LUA_TNONE (-1)
#define LUA_TNIL 0
#define LUA_TBOOLEAN 1
#define LUA_TLIGHTUSERDATA 2
#define LUA_TNUMBER 3
#define LUA_TSTRING 4
#define LUA_TTABLE 5
#define LUA_TFUNCTION 6
#define LUA_TUSERDATA 7
#define LUA_TTHREAD 8

#if ULUA_ABI == 501
typedef ptrdiff_t lua_Integer;
#define LUA_REGISTRYINDEX (-10000)
void lua_getfield(lua_State *L, int idx, const char *k);
void lua_rawget(lua_State *L, int idx);
void lua_rawgeti(lua_State *L, int idx, int n);
size_t lua_objlen(lua_State *L, int idx);
#define ulua_rawlen(L, i) lua_objlen(L, (i))
lua_Number lua_tonumber(lua_State *L, int idx);
lua_Integer lua_tointeger(lua_State *L, int idx);
void *lua_newuserdata(lua_State *L, size_t sz);
#define LUA_GLOBALSINDEX (-10002)
#define lua_upvalueindex(i) (LUA_GLOBALSINDEX - (i))
int lua_pcall(lua_State *L, int nargs, int nresults, int errfunc);
#elif ULUA_ABI == 504
typedef long long lua_Integer;
#define LUA_REGISTRYINDEX (-1000000 - 1000)
int lua_getfield(lua_State *L, int idx, const char *k);
int lua_rawget(lua_State *L, int idx);
int lua_rawgeti(lua_State *L, int idx, lua_Integer n);
unsigned long long lua_rawlen(lua_State *L, int idx);
#define ulua_rawlen(L, i) ((size_t)lua_rawlen(L, (i)))
lua_Number lua_tonumberx(lua_State *L, int idx, int *isnum);
lua_Integer lua_tointegerx(lua_State *L, int idx, int *isnum);
#define lua_tonumber(L, i) lua_tonumberx(L, (i), NULL)
#define lua_tointeger(L, i) lua_tointegerx(L, (i), NULL)
lua_Number lua_version(lua_State *L);
void *lua_newuserdatauv(lua_State *L, size_t sz, int nuvalue);
#define lua_newuserdata(L, s) lua_newuserdatauv(L, (s), 1)
#define lua_upvalueindex(i) (LUA_REGISTRYINDEX - (i))
int lua_pcallk(lua_State *L, int nargs, int nresults, int errfunc, intptr_t ctx, void *k);
#define lua_pcall(L, n, r, f) lua_pcallk(L, (n), (r), (f), 0, NULL)
#else
#error "ULUA_ABI must be 501 or 504"
#endif

int lua_gettop(lua_State *L);
void lua_settop(lua_State *L, int idx);
void lua_pushvalue(lua_State *L, int idx);
int lua_checkstack(lua_State *L, int sz);
int lua_type(lua_State *L, int idx);
int lua_isnumber(lua_State *L, int idx);
const char *lua_typename(lua_State *L, int tp);
int lua_toboolean(lua_State *L, int idx);
const char *lua_tolstring(lua_State *L, int idx, size_t *len);
void lua_pushnil(lua_State *L);
void lua_pushnumber(lua_State *L, lua_Number n);
void lua_pushinteger(lua_State *L, lua_Integer n);
void lua_pushboolean(lua_State *L, int b);
#if ULUA_ABI == 501
void lua_pushlstring(lua_State *L, const char *s, size_t l);
void lua_pushstring(lua_State *L, const char *s);
#else
const char *lua_pushlstring(lua_State *L, const char *s, size_t l);
const char *lua_pushstring(lua_State *L, const char *s);
#endif
const char *lua_pushfstring(lua_State *L, const char *fmt, ...);
void lua_pushcclosure(lua_State *L, lua_CFunction fn, int n);
void lua_createtable(lua_State *L, int narr, int nrec);
void lua_setfield(lua_State *L, int idx, const char *k);
void lua_rawset(lua_State *L, int idx);
int lua_next(lua_State *L, int idx);
void lua_concat(lua_State *L, int n);
int lua_error(lua_State *L);
int luaL_error(lua_State *L, const char *fmt, ...);
int luaL_callmeta(lua_State *L, int obj, const char *e);

#define lua_pop(L, n) lua_settop(L, -(n)-1)
#define lua_newtable(L) lua_createtable(L, 0, 0)
#define lua_pushcfunction(L, f) lua_pushcclosure(L, (f), 0)
#define lua_tostring(L, i) lua_tolstring(L, (i), NULL)
#define lua_pushliteral(L, s) lua_pushlstring(L, "" s, sizeof(s) - 1)

#endif
