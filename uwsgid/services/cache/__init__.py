"""Caches shared by every worker, thread and core of the instance (uWSGI's --cache2 / --cache):
the registry of configured caches (the first is the default), the --cache2 grammar, and the
choice of back end for each.

Back ends, with the same API and semantics: shm.py (shared memory, or a store=PATH file) and
redis.py (backend=redis://..., shared by several instances). num.py holds the 64-bit number
format and arithmetic both use for cache_inc & co.
"""

from __future__ import annotations

from uwsgid.services.cache.num import pack_num, unpack_num
from uwsgid.services.cache.shm import Cache, CacheError
from uwsgid.services.spec import keyvals
from uwsgid.static import pathcache as static_pathcache
from uwsgid.util.log import log

__all__ = ["Cache", "CacheError", "pack_num", "unpack_num", "parse_cache2", "create", "setup",
           "get_cache", "names", "all_stats"]

# ---- configuration and registry --------------------------------------------------------

_caches: dict[bytes, object] = {}
_default: list[bytes] = []

_SUFFIX = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
# uWSGI cache2 keys not implemented here: what each would have done (a warning names it)
_IGNORED = {
    "hash": "the key hash function (crc32 here; only the bucket spread differs)",
    "lazy_expire": "lazy expiry (expired items are invisible at once here anyway)",
    "lazy": "lazy expiry (expired items are invisible at once here anyway)",
    "sweep_on_full": "sweeping N expired items when full (here every expired item is reclaimed when full)",
    "store_sync": "msync of store= every N master cycles (the kernel writes the shared file back)",
    "storesync": "msync of store= every N master cycles (the kernel writes the shared file back)",
    "store_delete": "deleting an invalid store= file (here it is rebuilt empty)",
    "storedelete": "deleting an invalid store= file (here it is rebuilt empty)",
    "ignore_full": "silencing the 'cache full' log line (none is logged here; see the stats' full)",
    "math_initial": "the start value of cache_inc & co on a missing key (0 here)",
    "no_expire": "disabling expiry (expires= is honoured here)",
    "nodes": "sending updates to other nodes over UDP (use backend=redis:// to share a cache)",
    "node": "sending updates to other nodes over UDP (use backend=redis:// to share a cache)",
    "sync": "copying the cache from another node at start-up (use backend=redis://)",
    "udp": "receiving updates from other nodes over UDP (use backend=redis://)",
    "udp_servers": "receiving updates from other nodes over UDP (use backend=redis://)",
    "udp_server": "receiving updates from other nodes over UDP (use backend=redis://)",
    "udpservers": "receiving updates from other nodes over UDP (use backend=redis://)",
    "udpserver": "receiving updates from other nodes over UDP (use backend=redis://)",
    "lastmod": "the Last-Modified of cached items (for the cache routers, not implemented here)",
}


def _size(key: str, v: str, spec: str) -> int:
    s = v.strip().lower()
    mult = 1
    if s and s[-1] in _SUFFIX:
        mult, s = _SUFFIX[s[-1]], s[:-1]
    try:
        n = int(s) * mult
    except ValueError:
        raise CacheError(f"--cache2 {spec}: {key} must be a number (got {v!r})") from None
    return n


def _flag(v: str) -> bool:
    return v.strip().lower() not in ("0", "false", "no", "off", "")


def parse_cache2(spec: str) -> dict:
    """name=NAME,items=N,blocksize=B[,keysize=K][,hashsize=H][,purge_lru=1][,store=PATH]
    [,clear_on_full=1][,backend=redis://HOST:PORT/DB][,prefix=P]"""
    conf: dict = {"blocksize": 65536, "keysize": 2048}
    for k, v in keyvals(spec, "cache2", CacheError):
        if k == "name":
            conf["name"] = v.strip()
        elif k in ("items", "max_items", "maxitems"):
            conf["items"] = _size(k, v, spec)
        elif k in ("blocksize", "keysize", "hashsize", "blocks"):
            conf[k] = _size(k, v, spec)
        elif k in ("key_size", "hash_size"):
            conf[k.replace("_", "")] = _size(k, v, spec)
        elif k == "bitmap":
            conf["bitmap"] = bool(v.strip())        # uWSGI: any value turns it on
        elif k in ("purge_lru", "lru", "clear_on_full"):
            conf["purge_lru" if k == "lru" else k] = _flag(v)
        elif k in ("store", "backend", "prefix"):
            conf[k] = v.strip()
        elif k in _IGNORED:
            log(f"*** WARNING: --cache2 {spec}: {k}= is not supported here, ignored: {_IGNORED[k]} ***")
        else:
            raise CacheError(f"--cache2 {spec}: unknown key {k!r} (known: name, items, blocksize, blocks, "
                             "bitmap, keysize, hashsize, purge_lru, clear_on_full, store, backend, prefix)")
    if not conf.get("name"):
        raise CacheError(f"--cache2 {spec}: a name is required (name=NAME)")
    if "items" not in conf and "backend" not in conf:
        raise CacheError(f"--cache2 {spec}: you have to specify the cache size with items=N")
    return conf


def create(conf: dict):
    name = conf["name"].encode()
    if name in _caches:
        raise CacheError(f"cache {conf['name']!r} declared twice")
    backend = conf.get("backend")
    if backend:
        from uwsgid.services.cache.redis import RedisCache  # only when a cache uses it
        for k in ("items", "store", "purge_lru", "hashsize", "clear_on_full", "blocks", "bitmap"):
            if k in conf:
                log(f"cache {conf['name']!r}: {k}= does not apply to backend={backend}, ignored")
        c = RedisCache(name, backend, prefix=conf.get("prefix"), blocksize=conf["blocksize"],
                       keysize=conf["keysize"])
        c.check()
    else:
        if "prefix" in conf:
            raise CacheError(f"cache {conf['name']!r}: prefix= only applies to backend=redis://")
        c = Cache(name, conf["items"], conf["blocksize"], conf["keysize"], conf.get("hashsize", 0),
                  conf.get("purge_lru", False), conf.get("store"), conf.get("clear_on_full", False),
                  conf.get("blocks", 0), conf.get("bitmap", False))
    _caches[name] = c
    if not _default:
        _default.append(name)
    return c


def setup(cache2: list[str], legacy_items: int = 0, legacy_blocksize: int = 65536, legacy_store: str | None = None,
          add_items=(), load_files=(), load_files_gzip=()) -> None:
    """Create the configured caches (master, before fork). The first one is the default. Then
    --load-file-in-cache[-gzip] and --add-cache-item into each (uWSGI's uwsgi_cache_init)."""
    if _caches:
        return
    for spec in cache2:
        create(parse_cache2(spec))
    if legacy_items:
        conf = {"name": "default", "items": legacy_items, "blocksize": legacy_blocksize, "keysize": 2048}
        if legacy_store:
            conf["store"] = legacy_store
        create(conf)
    elif legacy_store:
        log("*** WARNING: --cache-store is for the legacy --cache N, which is not set: nothing is stored "
            "(give --cache2 ...,store=PATH) ***")
    for name, c in _caches.items():
        _preload(name.decode("utf-8", "replace"), c, add_items, load_files, load_files_gzip)
    for name, c in _caches.items():
        if isinstance(c, Cache):
            bitmap = f", bitmap of {c.blocks} blocks (values up to {c.max_item_size} bytes)" if c.bitmap else ""
            log(f"cache {name.decode()!r}: {c.items} items, blocksize {c.blocksize}{bitmap}, "
                f"{c.size // 1024} KB of shared memory{' (store ' + c.store + ')' if c.store else ''}")
        else:
            prefix = c.prefix.decode("utf-8", "replace")
            log(f"cache {name.decode()!r}: redis backend {c.shown_url}, blocksize {c.blocksize}, "
                + (f"keys prefixed {prefix!r}" if prefix else "bare keys (no prefix)"))


def _for_cache(value: str, cache: str) -> str | None:
    """uWSGI's "[CACHE ]ITEM": the item for this cache, None when another cache is named."""
    head, space, rest = value.partition(" ")
    if not space:
        return value
    return rest if head == cache else None


def _preload(name: str, c, add_items, load_files, load_files_gzip) -> None:
    for gz, values in ((False, load_files), (True, load_files_gzip)):
        for value in values:
            path = _for_cache(value, name)
            if path is None:
                continue
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                log(f"[cache-error] unable to read file \"{path}\": {e.strerror}")
                continue
            if gz:
                import gzip
                data = gzip.compress(data)
            ok = c.set(path.encode(), data)
            log(f"[cache{'-gzip' if gz else ''}] stored \"{path}\" in \"{name}\"" if ok else
                f"[cache-error] unable to store \"{path}\" in \"{name}\" ({len(data)} bytes)")
    for value in add_items:
        item = _for_cache(value, name)
        if item is None:
            continue
        key, eq, val = item.partition("=")
        if not eq:
            log(f"[cache] unable to store item {value} (KEY=VALUE)")
            continue
        ok = c.set(key.encode(), val.encode())
        log(f"[cache] stored \"{key}\" in \"{name}\"" if ok else f"[cache-error] unable to store \"{key}\" in \"{name}\"")


def get_cache(name: bytes | None):
    if name is None or name == b"":
        if not _default:
            raise ValueError("no cache configured: start the server with --cache2 name=NAME,items=N "
                             "(or --cache N)")
        return _caches[_default[0]]
    c = _caches.get(name)
    if c is None:
        if b"@" in name:
            raise ValueError(f"remote caches ({name.decode('utf-8', 'replace')}) are not supported: "
                             "use a shared backend (--cache2 ...,backend=redis://HOST:PORT/DB)")
        known = ", ".join(n.decode() for n in _caches) or "none"
        raise ValueError(f"no cache named {name.decode('utf-8', 'replace')!r} (configured: {known})")
    return c


def names() -> list[bytes]:
    return list(_caches)


def all_stats() -> list[dict]:
    return [c.stats() for c in _caches.values()]


def _reset_for_tests() -> None:
    _caches.clear()
    _default.clear()


# ---- --static-cache-paths (uwsgid.static, a layer below, is handed the lookup) ----------------

def _cache_for_static_paths(name: bytes | None):
    from uwsgid.services import channels
    channels.ensure()       # the caches exist once the services are set up (master, before fork)
    return get_cache(name)


static_pathcache.provide(_cache_for_static_paths)
