"""Caches shared by every worker, thread and core of the instance (uWSGI's --cache2 / --cache).

One cache = one shared mapping (MAP_SHARED anonymous memory created by the master before fork, or
a file with store=PATH so the content survives restarts) laid out as:

    header | hash table (hashsize x i32 item index, -1 = empty) | item headers | value blocks

Each item owns one block of `blocksize` bytes (uWSGI's classic, non-bitmap cache): a value larger
than the blocksize is refused. An item header holds the key hash, the key (up to keysize bytes),
the value length, its hash-chain link, its LRU links and its absolute expiry time (0 = never).
Expired items are invisible at once and reclaimed on access, on a full cache, and by keys().
Items never used sit above a watermark (`top`); deleted ones go to a free list.

Every operation takes the cache's ProcessLock (threads + processes), so a read-modify-write
(cache_inc) loses nothing and a reader never sees a half-written value.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
import zlib

from uwsgid.log import log
from uwsgid.services.locks import ProcessLock
from uwsgid.services.spec import keyvals

_NUM = struct.Struct("<q")
_I32 = struct.Struct("<i")
_U64 = struct.Struct("<Q")

MAGIC = b"UWC1"
# magic, items, blocksize, keysize, hashsize (geometry: must match to reuse a store file)
_GEOM = struct.Struct("<4sIIII")
# mutable header fields, each at a fixed offset
_OFF_TOP, _OFF_FREE, _OFF_LRU_HEAD, _OFF_LRU_TAIL, _OFF_COUNT = 20, 24, 28, 32, 36
_OFF_HITS, _OFF_MISS, _OFF_FULL, _OFF_MODIFIED = 40, 48, 56, 64
_HDR_SIZE = 128

# hash, keylen, flags, vallen, chain next, lru prev, lru next, expires (unix time, 0 = never)
_ITEM = struct.Struct("<IHHIiiid")
_F_USED = 1

_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


def pack_num(n: int) -> bytes:
    return _NUM.pack(_wrap64(n))


def unpack_num(value: bytes | None) -> int | None:
    """A cached number (8 bytes, as cache_inc & co. store it), or None for anything else."""
    if value is None or len(value) != 8:
        return None
    return _NUM.unpack(value)[0]


def _wrap64(n: int) -> int:
    # int64 arithmetic wraps like uWSGI's C int64_t math instead of raising
    if _I64_MIN <= n <= _I64_MAX:
        return n
    return ((n - _I64_MIN) % (1 << 64)) + _I64_MIN


def _apply(op: str, cur: int, amount: int) -> int:
    if op == "+":
        return _wrap64(cur + amount)
    if op == "-":
        return _wrap64(cur - amount)
    if op == "*":
        return _wrap64(cur * amount)
    # C division truncates toward zero
    q = abs(cur) // abs(amount)
    return _wrap64(q if (cur >= 0) == (amount >= 0) else -q)


def _align(n: int, a: int = 8) -> int:
    return (n + a - 1) & ~(a - 1)


class CacheError(ValueError):
    """A bad --cache2 specification (the message names the problem)."""


class Cache:
    def __init__(self, name: bytes, items: int, blocksize: int, keysize: int = 2048,
                 hashsize: int = 0, purge_lru: bool = False, store: str | None = None,
                 clear_on_full: bool = False):
        if items <= 0:
            raise CacheError(f"cache {name.decode()!r}: items must be > 0")
        if blocksize <= 0:
            raise CacheError(f"cache {name.decode()!r}: blocksize must be > 0")
        if not 0 < keysize <= 0xFFFF:
            raise CacheError(f"cache {name.decode()!r}: keysize must be 1..65535")
        self.name = name
        self.items = items
        self.blocksize = blocksize
        self.keysize = keysize
        if hashsize <= 0:
            hashsize = 64
            while hashsize < items and hashsize < (1 << 20):
                hashsize <<= 1
        self.hashsize = hashsize
        self.purge_lru = purge_lru
        self.clear_on_full = clear_on_full
        self.store = store
        self.lock = ProcessLock()

        self.tbl = _HDR_SIZE
        self.isz = _align(_ITEM.size + keysize)
        self.items_off = _align(self.tbl + 4 * hashsize)
        self.blocks_off = _align(self.items_off + self.isz * items, 4096)
        self.size = self.blocks_off + items * blocksize
        self.mm = self._map()

    # ---- memory ------------------------------------------------------------------------

    def _map(self) -> mmap.mmap:
        label = self.name.decode("utf-8", "replace")
        try:
            if self.store:
                fd = os.open(self.store, os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    if os.fstat(fd).st_size != self.size:
                        os.ftruncate(fd, self.size)
                    mm = mmap.mmap(fd, self.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
                finally:
                    os.close(fd)
            else:
                mm = mmap.mmap(-1, self.size, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS,
                               mmap.PROT_READ | mmap.PROT_WRITE)
        except (OSError, ValueError, OverflowError) as exc:
            raise CacheError(f"cannot allocate cache {label!r} ({self.size} bytes"
                             f"{', store ' + self.store if self.store else ''}): {exc}") from None
        geom = _GEOM.pack(MAGIC, self.items, self.blocksize, self.keysize, self.hashsize)
        self.mm = mm
        if mm[:_GEOM.size] == geom:
            log(f"cache {label!r}: reusing {self.store} ({self._geti(_OFF_COUNT)} items)")
        else:
            if self.store and mm[:4] == MAGIC:
                log(f"cache {label!r}: {self.store} has another geometry, starting empty")
            mm[:_GEOM.size] = geom
            self._reset()
        return mm

    def _geti(self, off: int) -> int:
        return _I32.unpack_from(self.mm, off)[0]

    def _seti(self, off: int, v: int) -> None:
        _I32.pack_into(self.mm, off, v)

    def _bump(self, off: int) -> None:
        _U64.pack_into(self.mm, off, _U64.unpack_from(self.mm, off)[0] + 1)

    def _reset(self) -> None:
        mm = self.mm
        mm[self.tbl:self.tbl + 4 * self.hashsize] = b"\xff" * (4 * self.hashsize)
        for off, v in ((_OFF_TOP, 0), (_OFF_FREE, -1), (_OFF_LRU_HEAD, -1), (_OFF_LRU_TAIL, -1), (_OFF_COUNT, 0)):
            self._seti(off, v)
        struct.pack_into("<d", mm, _OFF_MODIFIED, time.time())

    # ---- item primitives (lock held) ---------------------------------------------------

    def _ioff(self, idx: int) -> int:
        return self.items_off + idx * self.isz

    def _find(self, key: bytes, h: int, now: float) -> int:
        mm = self.mm
        idx = _I32.unpack_from(mm, self._slot(h))[0]
        kl = len(key)
        while idx >= 0:
            off = self._ioff(idx)
            ih, ikl, _fl, _vl, nxt, _lp, _ln, exp = _ITEM.unpack_from(mm, off)
            if ih == h and ikl == kl and mm[off + _ITEM.size:off + _ITEM.size + kl] == key:
                if exp and exp <= now:
                    self._remove(idx)
                    return -1
                return idx
            idx = nxt
        return -1

    def _slot(self, h: int) -> int:
        return self.tbl + 4 * (h % self.hashsize)

    def _remove(self, idx: int) -> None:
        """Unlink a used item from its hash chain and the LRU list; put it on the free list."""
        mm = self.mm
        off = self._ioff(idx)
        h, _kl, _fl, _vl, nxt, lp, ln, _exp = _ITEM.unpack_from(mm, off)
        slot = self._slot(h)
        cur = _I32.unpack_from(mm, slot)[0]
        if cur == idx:
            _I32.pack_into(mm, slot, nxt)
        else:
            while cur >= 0:
                coff = self._ioff(cur)
                cnext = _I32.unpack_from(mm, coff + 12)[0]
                if cnext == idx:
                    _I32.pack_into(mm, coff + 12, nxt)
                    break
                cur = cnext
        if self.purge_lru:
            self._lru_unlink(idx, lp, ln)
        # free list threads through the chain-next field
        _ITEM.pack_into(mm, off, 0, 0, 0, 0, self._geti(_OFF_FREE), -1, -1, 0.0)
        self._seti(_OFF_FREE, idx)
        self._seti(_OFF_COUNT, self._geti(_OFF_COUNT) - 1)

    def _lru_unlink(self, idx: int, lp: int, ln: int) -> None:
        mm = self.mm
        if lp >= 0:
            _I32.pack_into(mm, self._ioff(lp) + 20, ln)
        else:
            self._seti(_OFF_LRU_HEAD, ln)
        if ln >= 0:
            _I32.pack_into(mm, self._ioff(ln) + 16, lp)
        else:
            self._seti(_OFF_LRU_TAIL, lp)

    def _lru_push_front(self, idx: int) -> None:
        mm = self.mm
        head = self._geti(_OFF_LRU_HEAD)
        off = self._ioff(idx)
        _I32.pack_into(mm, off + 16, -1)
        _I32.pack_into(mm, off + 20, head)
        if head >= 0:
            _I32.pack_into(mm, self._ioff(head) + 16, idx)
        else:
            self._seti(_OFF_LRU_TAIL, idx)
        self._seti(_OFF_LRU_HEAD, idx)

    def _touch(self, idx: int) -> None:
        if self._geti(_OFF_LRU_HEAD) == idx:
            return
        off = self._ioff(idx)
        lp, ln = struct.unpack_from("<ii", self.mm, off + 16)
        self._lru_unlink(idx, lp, ln)
        self._lru_push_front(idx)

    def _sweep(self, now: float) -> int:
        """Reclaim every expired item; returns how many."""
        mm = self.mm
        n = 0
        for idx in range(self._geti(_OFF_TOP)):
            off = self._ioff(idx)
            _h, _kl, fl, _vl, _n, _lp, _ln, exp = _ITEM.unpack_from(mm, off)
            if fl & _F_USED and exp and exp <= now:
                self._remove(idx)
                n += 1
        return n

    def _alloc(self, now: float) -> int:
        free = self._geti(_OFF_FREE)
        if free >= 0:
            self._seti(_OFF_FREE, _I32.unpack_from(self.mm, self._ioff(free) + 12)[0])
            return free
        top = self._geti(_OFF_TOP)
        if top < self.items:
            self._seti(_OFF_TOP, top + 1)
            return top
        if self._sweep(now):
            return self._alloc(now)
        if self.purge_lru:
            tail = self._geti(_OFF_LRU_TAIL)
            if tail >= 0:
                self._remove(tail)
                return self._alloc(now)
        if self.clear_on_full:
            self._reset()
            return self._alloc(now)
        return -1

    def _write(self, idx: int, key: bytes, h: int, value: bytes, expires: float, new: bool) -> None:
        mm = self.mm
        off = self._ioff(idx)
        blk = self.blocks_off + idx * self.blocksize
        mm[blk:blk + len(value)] = value
        if new:
            slot = self._slot(h)
            head = _I32.unpack_from(mm, slot)[0]
            _ITEM.pack_into(mm, off, h, len(key), _F_USED, len(value), head, -1, -1, expires)
            mm[off + _ITEM.size:off + _ITEM.size + len(key)] = key
            _I32.pack_into(mm, slot, idx)
            self._seti(_OFF_COUNT, self._geti(_OFF_COUNT) + 1)
            if self.purge_lru:
                self._lru_push_front(idx)
        else:
            struct.pack_into("<I", mm, off + 8, len(value))
            struct.pack_into("<d", mm, off + 24, expires)
            if self.purge_lru:
                self._touch(idx)
        struct.pack_into("<d", mm, _OFF_MODIFIED, time.time())

    def _store(self, key: bytes, value: bytes, expires: int, update: bool, keep_expiry: bool) -> bool:
        now = time.time()
        h = zlib.crc32(key)
        idx = self._find(key, h, now)
        if idx >= 0:
            if not update:
                return False
            exp = _ITEM.unpack_from(self.mm, self._ioff(idx))[7] if keep_expiry and not expires else \
                (now + expires if expires else 0.0)
            self._write(idx, key, h, value, exp, new=False)
            return True
        idx = self._alloc(now)
        if idx < 0:
            self._bump(_OFF_FULL)
            return False
        self._write(idx, key, h, value, now + expires if expires else 0.0, new=True)
        return True

    # ---- API (each call holds the lock) ------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        if len(key) > self.keysize:
            return None
        h = zlib.crc32(key)
        with self.lock:
            idx = self._find(key, h, time.time())
            if idx < 0:
                self._bump(_OFF_MISS)
                return None
            self._bump(_OFF_HITS)
            if self.purge_lru:
                self._touch(idx)
            vl = struct.unpack_from("<I", self.mm, self._ioff(idx) + 8)[0]
            blk = self.blocks_off + idx * self.blocksize
            return self.mm[blk:blk + vl]

    def exists(self, key: bytes) -> bool:
        if len(key) > self.keysize:
            return False
        with self.lock:
            return self._find(key, zlib.crc32(key), time.time()) >= 0

    def set(self, key: bytes, value: bytes, expires: int = 0, update: bool = False) -> bool:
        if len(value) > self.blocksize or len(key) > self.keysize or not key:
            return False
        with self.lock:
            return self._store(key, value, expires, update, keep_expiry=False)

    def delete(self, key: bytes) -> bool:
        if len(key) > self.keysize:
            return False
        with self.lock:
            idx = self._find(key, zlib.crc32(key), time.time())
            if idx < 0:
                return False
            self._remove(idx)
            return True

    def clear(self) -> None:
        with self.lock:
            self._reset()

    def keys(self) -> list[bytes]:
        out = []
        mm = self.mm
        with self.lock:
            now = time.time()
            self._sweep(now)
            for idx in range(self._geti(_OFF_TOP)):
                off = self._ioff(idx)
                _h, kl, fl, *_ = _ITEM.unpack_from(mm, off)
                if fl & _F_USED:
                    out.append(mm[off + _ITEM.size:off + _ITEM.size + kl])
        return out

    def math(self, key: bytes, op: str, amount: int, expires: int = 0) -> bool:
        """In-place int64 arithmetic; a missing key counts as 0. False if the value is not 8 bytes."""
        if len(key) > self.keysize or not key or self.blocksize < 8:
            return False
        h = zlib.crc32(key)
        with self.lock:
            now = time.time()
            idx = self._find(key, h, now)
            cur = 0
            if idx >= 0:
                vl = struct.unpack_from("<I", self.mm, self._ioff(idx) + 8)[0]
                if vl != 8:
                    return False
                cur = _NUM.unpack_from(self.mm, self.blocks_off + idx * self.blocksize)[0]
            return self._store(key, pack_num(_apply(op, cur, amount)), expires, update=True, keep_expiry=True)

    def num(self, key: bytes) -> int | None:
        return unpack_num(self.get(key))

    def stats(self) -> dict:
        """uWSGI's stats JSON entry for a cache."""
        with self.lock:
            hits, miss, full = (_U64.unpack_from(self.mm, o)[0] for o in (_OFF_HITS, _OFF_MISS, _OFF_FULL))
            count = self._geti(_OFF_COUNT)
            modified = struct.unpack_from("<d", self.mm, _OFF_MODIFIED)[0]
        return {"name": self.name.decode("utf-8", "replace"), "hash": "crc32", "hashsize": self.hashsize,
                "keysize": self.keysize, "max_items": self.items, "blocks": self.items,
                "blocksize": self.blocksize, "items": count, "hits": hits, "miss": miss, "full": full,
                "last_modified_at": int(modified), "purge_lru": int(self.purge_lru),
                "store": self.store or ""}


# ---- configuration and registry --------------------------------------------------------

_caches: dict[bytes, object] = {}
_default: list[bytes] = []

_SUFFIX = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
# uWSGI cache2 keys we accept but do not implement (bitmap mode, network sync, ...)
_IGNORED = {"hash", "bitmap", "blocks", "lazy_expire", "sweep_on_full", "store_sync", "store_delete",
            "ignore_full", "math_initial", "no_expire", "nodes", "node", "sync", "udp", "expire"}


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
        elif k in ("blocksize", "keysize", "hashsize"):
            conf[k] = _size(k, v, spec)
        elif k in ("purge_lru", "lru", "clear_on_full"):
            conf["purge_lru" if k == "lru" else k] = _flag(v)
        elif k in ("store", "backend", "prefix"):
            conf[k] = v.strip()
        elif k in _IGNORED:
            log(f"--cache2 {conf.get('name', '')}: option {k!r} is not supported, ignored")
        else:
            raise CacheError(f"--cache2 {spec}: unknown key {k!r} (known: name, items, blocksize, keysize, "
                             "hashsize, purge_lru, clear_on_full, store, backend, prefix)")
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
        from uwsgid.services.redis_cache import RedisCache
        for k in ("items", "store", "purge_lru", "hashsize", "clear_on_full"):
            if k in conf:
                log(f"cache {conf['name']!r}: {k}= does not apply to backend={backend}, ignored")
        c = RedisCache(name, backend, prefix=conf.get("prefix"), blocksize=conf["blocksize"],
                       keysize=conf["keysize"])
        c.check()
    else:
        if "prefix" in conf:
            raise CacheError(f"cache {conf['name']!r}: prefix= only applies to backend=redis://")
        c = Cache(name, conf["items"], conf["blocksize"], conf["keysize"], conf.get("hashsize", 0),
                  conf.get("purge_lru", False), conf.get("store"), conf.get("clear_on_full", False))
    _caches[name] = c
    if not _default:
        _default.append(name)
    return c


def setup(cache2: list[str], legacy_items: int = 0, legacy_blocksize: int = 65536) -> None:
    """Create the configured caches (master, before fork). The first one is the default."""
    if _caches:
        return
    for spec in cache2:
        create(parse_cache2(spec))
    if legacy_items:
        create({"name": "default", "items": legacy_items, "blocksize": legacy_blocksize, "keysize": 2048})
    for name, c in _caches.items():
        if isinstance(c, Cache):
            log(f"cache {name.decode()!r}: {c.items} items, blocksize {c.blocksize}, "
                f"{c.size // 1024} KB of shared memory{' (store ' + c.store + ')' if c.store else ''}")


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
