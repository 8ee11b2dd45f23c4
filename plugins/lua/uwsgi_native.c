/* uwsgi.native: the Lua plugin's C module, loaded into every lua_State with require (state.py:
 * package.loadlib into package.preload, then require "uwsgi.native").
 *
 * Built twice by uwsgiconfig.py (plugins/lua/uwsgiplugin.py's SHARED_MODULES), once per Lua ABI
 * (lua_abi.h): build/lib/uwsgi_lua_native501.so for LuaJIT and Lua 5.1, ...504.so for Lua 5.4.
 * It links to no Lua: the lua_* symbols come from the lupa engine of the process.
 *
 * What it does, all without a Python crossing:
 *   env(block, app_path)           the WSAPI env table of a request from a uwsgi packet's vars
 *                                  block (u16le key length, key, u16le value length, value...),
 *                                  the CGI defaults and APP_PATH added
 *   headers(t [, extra])           a response headers table (name = value | {values}) and
 *                                  uwsgi.add_headers' { {name, value}... } flattened to
 *                                  "name\0value\0...", every name a token and no CR/LF/NUL in a
 *                                  value; nil when something is invalid (runtime.lua then names it)
 *   lift(name, call)               uwsgi.NAME for a function served by Python: a C closure that
 *                                  runs call(name, ...) and turns an error into "uwsgi.NAME: ..."
 *                                  (~70 B of the state's heap each, a Lua closure pair ~250 B)
 *   api.mypid, micros, monotonic, mem, close, is_connected, async_connect: the `uwsgi` functions
 *                                  that need no Python service (uwsgi_table.lua takes them)
 *
 * Style: stateless functions, every length from the input checked before use, no allocation
 * outside the Lua heap (a Lua error can longjmp out of any lua_* call). */

#include "lua_abi.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---- the WSAPI env ------------------------------------------------------------------------ */

static const char *const CGI_DEFAULTS[] = {
    "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE", "CONTENT_LENGTH", NULL,
};

static unsigned u16le(const unsigned char *p) { return (unsigned)p[0] | ((unsigned)p[1] << 8); }

/* The number of complete vars of a block and, in *end, where they end: a var that runs past
 * the block ends it (the core checked the packet before dispatch; this is the last guard: the
 * vars before it are kept, as runtime.lua's parser keeps them). */
static long block_count(const unsigned char *b, size_t len, size_t *end) {
    size_t pos = 0;
    long n = 0;
    *end = 0;
    while (len - pos >= 4) {
        size_t kl = u16le(b + pos);
        if (len - pos - 2 < kl + 2) break;
        size_t vl = u16le(b + pos + 2 + kl);
        if (len - pos - 4 - kl < vl) break;
        pos += 4 + kl + vl;
        n++;
        *end = pos;
    }
    return n;
}

static void env_from_block(lua_State *L, const unsigned char *b, size_t len) {
    long n = block_count(b, len, &len);
    lua_createtable(L, 0, (int)n + 8);
    size_t pos = 0;
    while (pos < len) {           /* complete vars only: checked by block_count */
        size_t kl = u16le(b + pos);
        const char *k = (const char *)b + pos + 2;
        pos += 2 + kl;
        size_t vl = u16le(b + pos);
        const char *v = (const char *)b + pos + 2;
        pos += 2 + vl;
        lua_pushlstring(L, k, kl);
        lua_pushlstring(L, v, vl);
        lua_rawset(L, -3);
    }
}

/* env(block, app_path) -> env */
static int l_env(lua_State *L) {
    size_t len = 0, alen = 0;
    const char *src = lua_type(L, 1) == LUA_TSTRING ? lua_tolstring(L, 1, &len) : NULL;
    const char *app = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &alen) : NULL;
    if (src == NULL) return luaL_error(L, "uwsgi.native.env: the vars block must be a string");
    lua_settop(L, 2);
    env_from_block(L, (const unsigned char *)src, len);
    int env = lua_gettop(L);
    if (app != NULL) lua_pushlstring(L, app, alen); else lua_pushliteral(L, "");
    lua_setfield(L, env, "APP_PATH");
    for (const char *const *name = CGI_DEFAULTS; *name; name++) {
        lua_pushstring(L, *name);
        lua_rawget(L, env);
        int missing = lua_type(L, -1) == LUA_TNIL;
        lua_pop(L, 1);
        if (missing) {
            lua_pushliteral(L, "");
            lua_setfield(L, env, *name);
        }
    }
    return 1;
}

/* ---- response headers --------------------------------------------------------------------- */

/* RFC 9110 tchar: what runtime.lua's valid_name accepts ([%w!#$%&'*+-.^_`|~]) */
static int is_token(const unsigned char *s, size_t n) {
    static const char extra[] = "!#$%&'*+-.^_`|~";
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) continue;
        if (c == 0 || strchr(extra, c) == NULL) return 0;
    }
    return 1;
}

static int clean_value(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '\r' || c == '\n' || c == 0) return 0;
    }
    return 1;
}

/* One value (at val_idx) of the header named k: its length with the separators, -1 when it
 * is invalid. Copied to *out (advanced) when out is not NULL. */
static long one_value(lua_State *L, const char *k, size_t kl, int val_idx, char **out, int first) {
    int t = lua_type(L, val_idx);
    if (t != LUA_TSTRING && t != LUA_TNUMBER) return -1;
    lua_pushvalue(L, val_idx);            /* a copy: tolstring converts a number in place */
    size_t vl;
    const char *v = lua_tolstring(L, -1, &vl);
    long n = -1;
    if (clean_value(v, vl)) {
        n = (long)(kl + 1 + vl + (first ? 0 : 1));
        if (*out != NULL) {
            char *o = *out;
            if (!first) *o++ = 0;
            memcpy(o, k, kl);
            o += kl;
            *o++ = 0;
            memcpy(o, v, vl);
            *out = o + vl;
        }
    }
    lua_pop(L, 1);
    return n;
}

/* A name (at key_idx) and its value or array of values (at val_idx). */
static long one_header(lua_State *L, int key_idx, int val_idx, char **out, long total) {
    if (lua_type(L, key_idx) != LUA_TSTRING) return -1;
    size_t kl;
    const char *k = lua_tolstring(L, key_idx, &kl);
    if (!is_token((const unsigned char *)k, kl)) return -1;
    if (lua_type(L, val_idx) != LUA_TTABLE)
        return one_value(L, k, kl, val_idx, out, total == 0);
    long sum = 0;
    size_t n = ulua_rawlen(L, val_idx);
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, val_idx, (int)i);
        long one = one_value(L, k, kl, lua_gettop(L), out, total + sum == 0);
        lua_pop(L, 1);
        if (one < 0) return -1;
        sum += one;
    }
    return sum;
}

/* The headers table at h, then the array of {name, value} at extra (0: none): the flat
 * length, or -1 when something is invalid. Written to out when out is not NULL (the
 * traversal order of an unchanged table is the same both times). */
static long walk(lua_State *L, int h, int extra, char *out) {
    long total = 0;
    char *o = out;
    char **op = out ? &o : &out;
    lua_pushnil(L);
    while (lua_next(L, h)) {
        int top = lua_gettop(L);
        long n = one_header(L, top - 1, top, op, total);
        lua_pop(L, 1);
        if (n < 0) { lua_pop(L, 1); return -1; }
        total += n;
    }
    if (extra) {
        size_t count = ulua_rawlen(L, extra);
        for (size_t i = 1; i <= count; i++) {
            lua_rawgeti(L, extra, (int)i);
            int pair = lua_gettop(L);
            long n = -1;
            if (lua_type(L, pair) == LUA_TTABLE) {
                lua_rawgeti(L, pair, 1);
                lua_rawgeti(L, pair, 2);
                if (lua_type(L, -1) != LUA_TTABLE)     /* one value, not an array of them */
                    n = one_header(L, pair + 1, pair + 2, op, total);
            }
            lua_settop(L, pair - 1);
            if (n < 0) return -1;
            total += n;
        }
    }
    return total;
}

/* headers(t [, extra]) -> "name\0value\0..." | nil (invalid: the caller names the problem) */
static int l_headers(lua_State *L) {
    if (lua_type(L, 1) != LUA_TTABLE) { lua_pushnil(L); return 1; }
    int extra = lua_type(L, 2) == LUA_TTABLE ? 2 : 0;
    lua_settop(L, 2);
    long total = walk(L, 1, extra, NULL);
    if (total < 0) { lua_pushnil(L); return 1; }
    char small[2048];
    char *buf = small;
    if ((size_t)total > sizeof(small))
        buf = lua_newuserdata(L, (size_t)total);      /* freed by the GC, even after an error */
    if (walk(L, 1, extra, buf) != total) { lua_pushnil(L); return 1; }
    lua_pushlstring(L, buf, (size_t)total);
    return 1;
}

/* ---- the `uwsgi` functions that need no Python --------------------------------------------- */

static int l_mypid(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)getpid());
    return 1;
}

static int l_micros(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushinteger(L, (lua_Integer)((long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000));
    return 1;
}

static int l_monotonic(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
    return 1;
}

/* uwsgi.mem() -> rss, vsz in bytes (uWSGI's order), 0, 0 when /proc cannot tell */
static int l_mem(lua_State *L) {
    long long vsz = 0, rss = 0;
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n > 0) {
            buf[n] = 0;
            if (sscanf(buf, "%lld %lld", &vsz, &rss) != 2) vsz = rss = 0;
        }
    }
    long page = sysconf(_SC_PAGESIZE);
    lua_pushinteger(L, (lua_Integer)(rss * page));
    lua_pushinteger(L, (lua_Integer)(vsz * page));
    return 2;
}

/* an fd argument: a number or a numeric string (Python's int() took both), else -1 */
static int fd_arg(lua_State *L, int idx) {
    if (!lua_isnumber(L, idx)) return -1;
    lua_Integer fd = lua_tointeger(L, idx);
    return fd >= 0 && fd <= 0x7fffffff ? (int)fd : -1;
}

static int l_close(lua_State *L) {
    int fd = fd_arg(L, 1);
    if (fd < 0) return luaL_error(L, "uwsgi.close: the fd must be a number >= 0");
    close(fd);
    return 0;
}

static int l_is_connected(lua_State *L) {
    int fd = fd_arg(L, 1);
    int err = 0;
    socklen_t len = sizeof(err);
    struct sockaddr_storage peer;
    socklen_t plen = sizeof(peer);
    int ok = fd >= 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0
             && getpeername(fd, (struct sockaddr *)&peer, &plen) == 0;
    lua_pushboolean(L, ok);
    return 1;
}

/* uwsgi.async_connect("host:port" | "/unix/path" | "@abstract") -> a non-blocking fd whose
 * connect is under way (wait_fd_write, then is_connected), or nil when it cannot start. */
static int l_async_connect(lua_State *L) {
    size_t len;
    const char *addr = lua_type(L, 1) == LUA_TSTRING ? lua_tolstring(L, 1, &len) : NULL;
    if (addr == NULL || len == 0 || len > 255) { lua_pushnil(L); return 1; }
    int fd = -1, rc = -1;
    if (addr[0] == '/' || addr[0] == '@') {
        struct sockaddr_un sun;
        if (len >= sizeof(sun.sun_path)) { lua_pushnil(L); return 1; }
        memset(&sun, 0, sizeof(sun));
        sun.sun_family = AF_UNIX;
        memcpy(sun.sun_path, addr, len);
        if (addr[0] == '@') sun.sun_path[0] = 0;
        socklen_t sl = addr[0] == '@' ? (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)
                                      : (socklen_t)sizeof(sun);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd >= 0) rc = connect(fd, (struct sockaddr *)&sun, sl);
    } else {
        char host[256], port[16];
        const char *colon = strrchr(addr, ':');
        size_t hl = colon ? (size_t)(colon - addr) : 0;
        size_t pl = colon ? len - hl - 1 : 0;
        if (colon == NULL || pl == 0 || pl >= sizeof(port)) { lua_pushnil(L); return 1; }
        const char *h = addr;
        if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') { h++; hl -= 2; }   /* [::1]:80 */
        if (hl == 0) { h = "127.0.0.1"; hl = 9; }
        memcpy(host, h, hl);
        host[hl] = 0;
        memcpy(port, colon + 1, pl);
        port[pl] = 0;
        for (size_t i = 0; i < pl; i++)
            if (port[i] < '0' || port[i] > '9') { lua_pushnil(L); return 1; }
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof(hints));
        hints.ai_socktype = SOCK_STREAM;
        if (getaddrinfo(host, port, &hints, &res) != 0 || res == NULL) { lua_pushnil(L); return 1; }
        fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd >= 0) rc = connect(fd, res->ai_addr, res->ai_addrlen);
        freeaddrinfo(res);
    }
    if (fd < 0 || (rc != 0 && errno != EINPROGRESS && errno != EAGAIN)) {
        if (fd >= 0) close(fd);
        lua_pushnil(L);
        return 1;
    }
    lua_pushinteger(L, (lua_Integer)fd);
    return 1;
}

/* ---- uwsgi.NAME for the functions Python serves ------------------------------------------- */

/* upvalues: 1 the name, 2 the Python dispatcher (state.py's api_call) */
static int l_lifted(lua_State *L) {
    int n = lua_gettop(L);
    if (!lua_checkstack(L, n + 4)) return luaL_error(L, "uwsgi: too many arguments");
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_pushvalue(L, lua_upvalueindex(1));
    for (int i = 1; i <= n; i++) lua_pushvalue(L, i);
    if (lua_pcall(L, n + 1, LUA_MULTRET, 0) != 0) {
        int t = lua_type(L, -1);
        const char *msg = NULL;
        if (t == LUA_TSTRING || t == LUA_TNUMBER) msg = lua_tostring(L, -1);
        else if (luaL_callmeta(L, -1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) msg = lua_tostring(L, -1);
        lua_pushfstring(L, "uwsgi.%s: %s", lua_tostring(L, lua_upvalueindex(1)), msg ? msg : lua_typename(L, t));
        return lua_error(L);
    }
    return lua_gettop(L) - n;
}

/* lift(name, call) -> function(...) */
static int l_lift(lua_State *L) {
    if (lua_type(L, 1) != LUA_TSTRING) return luaL_error(L, "uwsgi.native.lift: the name must be a string");
    lua_settop(L, 2);
    lua_pushcclosure(L, l_lifted, 2);
    return 1;
}

/* ---- the module ---------------------------------------------------------------------------- */

struct reg { const char *name; lua_CFunction fn; };

static const struct reg MODULE[] = {
    {"env", l_env}, {"headers", l_headers}, {"monotonic", l_monotonic}, {"lift", l_lift}, {NULL, NULL},
};

static const struct reg API[] = {
    {"mypid", l_mypid}, {"micros", l_micros}, {"monotonic", l_monotonic}, {"mem", l_mem},
    {"close", l_close}, {"is_connected", l_is_connected}, {"async_connect", l_async_connect},
    {NULL, NULL},
};

static void set_funcs(lua_State *L, const struct reg *r) {
    for (; r->name; r++) {
        lua_pushcfunction(L, r->fn);
        lua_setfield(L, -2, r->name);
    }
}

int luaopen_uwsgi_native(lua_State *L) {
#if ULUA_ABI == 504
    lua_Number v = lua_version(L);
    if (v < 504 || v >= 505)
        return luaL_error(L, "uwsgi.native was built for Lua 5.4, this state runs Lua %d", (int)v);
#endif
    lua_createtable(L, 0, 6);
    set_funcs(L, MODULE);
    lua_createtable(L, 0, 8);
    set_funcs(L, API);
    lua_setfield(L, -2, "api");
    lua_pushinteger(L, ULUA_ABI);
    lua_setfield(L, -2, "abi");
    return 1;
}
