"""The actions and condition of uWSGI's router_cache plugin, on this server's shared caches
(--cache2, --cache: shared memory or a Redis back end, through uwsgid.services.api).

    cache[-continue]   key=K[,name=CACHE][,content_type=T][,content_encoding=E][,mime=1][,nocl=1]:
                       answer 200 with the cached value; a miss goes on (-continue: a hit too)
    cachestore / cache-store   key=K[,name=][,value=V][,expires=S][,status=N]: store the
                       response body (200, or status N) when it is complete
    cachevar           key=K,var=VAR[,name=][,num=1]: request var VAR = the cached value
    cacheset           key=K,value=V[,name=][,expires=S]: store V (never overwrites, as uWSGI)
    cacheinc/dec/mul/div   key=K[,value=N][,name=][,expires=S]: 64-bit math on the item
    incache (condition)    key=K[,name=CACHE]: the key is in the cache
"""

from __future__ import annotations

from uwsgid.routing import conditions
from uwsgid.routing.chains import BREAK, NEXT, action
from uwsgid.routing.translate import Text, mime_type, num
from uwsgid.util.log import log


def _api():
    from uwsgid.services import api  # the caches live in the services layer, below this one
    return api


def _kv(arg: bytes, allowed: tuple, what: str) -> dict:
    out = {}
    for item in arg.split(b","):
        if not item:
            continue
        key, eq, value = item.partition(b"=")
        key = key.strip().decode("latin-1")
        if key not in allowed:
            raise ValueError(f"invalid {what} route syntax: unknown key {key!r} (keys: {', '.join(allowed)})")
        out[key] = value
    if not out.get("key"):
        raise ValueError(f"invalid {what} route syntax: you need to specify a cache key (key=...)")
    return out


def _name(conf: dict):
    name = conf.get("name")
    return Text(name) if name else None


def _expires(conf: dict) -> int:
    return num(conf.get("expires") or b"0")


def _cache(keep_going: bool):
    def factory(arg, chain):
        conf = _kv(arg, ("key", "content_type", "content_encoding", "mime", "name", "no_offload",
                         "no_content_length", "no_cl", "nocl"), "cache")
        key = Text(conf["key"])
        name = _name(conf)
        ctype = conf.get("content_type") or b"text/html"
        encoding = conf.get("content_encoding")
        use_mime = bool(conf.get("mime"))
        nocl = any(conf.get(k) for k in ("no_content_length", "no_cl", "nocl"))

        def run(state, req, groups):
            k = key.render(req, groups)
            try:
                value = _api().cache_get(k, name.render(req, groups) if name else None)
            except Exception as e:
                log(f"[uwsgi-route] cache {k!r}: {e}")
                return NEXT
            if value is None:
                return NEXT
            headers = [(b"Content-Type", (mime_type(k) if use_mime else None) or ctype)]
            if encoding:
                headers.append((b"Content-Encoding", encoding))
            if not nocl:
                headers.append((b"Content-Length", b"%d" % len(value)))
            state.answer(req, b"200 OK", headers, value)
            return NEXT if keep_going else BREAK
        return run
    return factory


action("cache", doc="key=K[,name=][,content_type=][,content_encoding=][,mime=1][,nocl=1]: answer "
                    "with the cached value, or go on when it is missing")(_cache(False))
action("cache-continue", doc="as cache, but go on with the next route after answering")(_cache(True))


@action("cachestore", "cache-store", doc="key=K[,name=][,value=V][,expires=S][,status=N]: store the "
                                        "whole response body (status 200 or N) in the cache")
def _cachestore(arg, chain):
    conf = _kv(arg, ("key", "name", "value", "status", "code", "expires", "gzip"), "cachestore")
    if conf.get("gzip"):
        raise ValueError("gzip=... is not implemented here")
    key = Text(conf["key"])
    name = _name(conf)
    value = Text(conf["value"]) if conf.get("value") else None
    expires = _expires(conf)
    status = num(conf.get("status") or conf.get("code") or b"0")

    def run(state, req, groups):
        k = key.render(req, groups)
        cache = name.render(req, groups) if name else None
        forced = value.render(req, groups) if value is not None else None

        def put(body):
            data = forced if forced is not None else body
            if data:
                _api().cache_update(k, data, expires, cache)
        if state.stores is None:
            state.stores = []
        state.stores.append((put, status))
        state.hold = True
        return NEXT
    return run


@action("cachevar", doc="key=K,var=VAR[,name=][,num=1]: set request var VAR to the cached value")
def _cachevar(arg, chain):
    conf = _kv(arg, ("key", "var", "name", "num", "as_num"), "cachevar")
    if not conf.get("var"):
        raise ValueError("invalid route syntax: you need to specify a cache key and a request var")
    key = Text(conf["key"])
    var = conf["var"]
    name = _name(conf)
    as_num = bool(conf.get("num") or conf.get("as_num"))

    def run(state, req, groups):
        k = key.render(req, groups)
        cache = name.render(req, groups) if name else None
        api = _api()
        if as_num:
            n = api.cache_num(k, cache)
            if n is None:
                if api.cache_get(k, cache) is None:
                    return NEXT
                n = 0
            req.vars[var] = str(n).encode()
            return NEXT
        v = api.cache_get(k, cache)
        if v is not None:
            req.vars[var] = v
        return NEXT
    return run


@action("cacheset", doc="key=K,value=V[,name=][,expires=S]: store V (an existing key is kept)")
def _cacheset(arg, chain):
    conf = _kv(arg, ("key", "value", "name", "expires"), "cacheset")
    if not conf.get("value"):
        raise ValueError("invalid cacheset route syntax: you need to specify a cache key and a value")
    key = Text(conf["key"])
    value = Text(conf["value"])
    name = _name(conf)
    expires = _expires(conf)

    def run(state, req, groups):
        try:
            _api().cache_set(key.render(req, groups), value.render(req, groups), expires,
                             name.render(req, groups) if name else None)
        except Exception as e:
            log(f"[uwsgi-route] cacheset: {e}")
            return BREAK
        return NEXT
    return run


def _cachemath(fn_name: str, default: int):
    def factory(arg, chain):
        conf = _kv(arg, ("key", "value", "name", "expires"), fn_name)
        key = Text(conf["key"])
        value = Text(conf["value"]) if conf.get("value") else None
        name = _name(conf)
        expires = _expires(conf)

        def run(state, req, groups):
            n = num(value.render(req, groups)) if value is not None else default
            api = _api()
            try:
                ok = getattr(api, "cache_" + fn_name[5:])(key.render(req, groups), n, expires,
                                                          name.render(req, groups) if name else None)
            except Exception as e:
                log(f"[uwsgi-route] {fn_name}: {e}")
                return BREAK
            return NEXT if ok is not False else BREAK
        return run
    return factory


action("cacheinc", doc="key=K[,value=N][,name=][,expires=S]: add N (default 1) to the 64-bit item")(
    _cachemath("cacheinc", 1))
action("cachedec", doc="key=K[,value=N]...: subtract N (default 1)")(_cachemath("cachedec", 1))
action("cachemul", doc="key=K[,value=N]...: multiply by N (default 2)")(_cachemath("cachemul", 2))
action("cachediv", doc="key=K[,value=N]...: divide by N (default 2)")(_cachemath("cachediv", 2))


@conditions.condition("incache", doc="key=K[,name=CACHE]: the key is in the cache")
def _incache(args):
    try:
        conf = _kv(args, ("key", "name"), "incache")
    except ValueError:
        return lambda req: (False, ())
    key = Text(conf["key"])
    name = _name(conf)

    def test(req):
        try:
            return bool(_api().cache_exists(key.render(req), name.render(req) if name else None)), ()
        except Exception as e:
            log(f"[uwsgi-route] incache: {e}")
            return False, ()
    return test
