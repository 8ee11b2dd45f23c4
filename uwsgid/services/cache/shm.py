"""The shared-memory cache: one --cache2 (or --cache) shared by every worker, thread and core
of the instance.

One cache = one shared mapping (MAP_SHARED anonymous memory created by the master before fork, or
a file with store=PATH so the content survives restarts) laid out as:

    header | hash table (hashsize x i32 item index, -1 = empty) | item headers | value blocks

Each item owns one block of `blocksize` bytes (uWSGI's classic cache): a value larger than the
blocksize is refused. With bitmap=1 (uWSGI's bitmap cache, core/cache.c) the data area is `blocks`
blocks shared by all items: a value takes as many contiguous blocks as it needs (up to
blocks x blocksize), found next-fit in a block map placed after the item headers (one byte per
block here, so that finding N free blocks is one mmap.find), and each item records its first
block in a table after the headers:

    header | hash table | item headers | first block per item (i64) | block map | value blocks
 An item header holds the key hash, the key (up to keysize bytes),
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

from uwsgid.services.cache.num import INT64, apply_op, pack_num, unpack_num
from uwsgid.services.locks import ProcessLock
from uwsgid.util.log import log

_I32 = struct.Struct("<i")
_U64 = struct.Struct("<Q")

MAGIC = b"UWC1"
MAGIC_BITMAP = b"UWB1"
# magic, items, blocksize, keysize, hashsize (geometry: must match to reuse a store file)
_GEOM = struct.Struct("<4sIIII")
# mutable header fields, each at a fixed offset
_OFF_TOP, _OFF_FREE, _OFF_LRU_HEAD, _OFF_LRU_TAIL, _OFF_COUNT = 20, 24, 28, 32, 36
_OFF_HITS, _OFF_MISS, _OFF_FULL, _OFF_MODIFIED = 40, 48, 56, 64
_OFF_POS, _OFF_BLOCKS = 72, 80         # bitmap mode: next-fit position; blocks (geometry)
_HDR_SIZE = 128
_Q = struct.Struct("<q")

# hash, keylen, flags, vallen, chain next, lru prev, lru next, expires (unix time, 0 = never)
_ITEM = struct.Struct("<IHHIiiid")
_F_USED = 1


def _align(n: int, a: int = 8) -> int:
    return (n + a - 1) & ~(a - 1)


class CacheError(ValueError):
    """A bad --cache2 specification or a cache that cannot be created (the message names the
    problem)."""


class Cache:
    def __init__(self, name: bytes, items: int, blocksize: int, keysize: int = 2048,
                 hashsize: int = 0, purge_lru: bool = False, store: str | None = None,
                 clear_on_full: bool = False, blocks: int = 0, bitmap: bool = False):
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

        if blocks < 0 or (blocks and blocks < items):
            raise CacheError(f"cache {name.decode()!r}: invalid number of cache blocks ({blocks}), must be "
                             f"at least items ({items})")
        self.blocks = blocks or items      # without bitmap, uWSGI's extra blocks are never used
        self.bitmap = bitmap
        self.max_item_size = blocksize * self.blocks if bitmap else blocksize
        self.max_item_size = min(self.max_item_size, 0xFFFFFFFF)   # the item header's u32 length

        self.tbl = _HDR_SIZE
        self.isz = _align(_ITEM.size + keysize)
        self.items_off = _align(self.tbl + 4 * hashsize)
        end = self.items_off + self.isz * items
        if bitmap:
            self.firsts_off = end
            self.map_off = self.firsts_off + 8 * items
            end = self.map_off + self.blocks
        self.blocks_off = _align(end, 4096)
        self.size = self.blocks_off + (self.blocks if bitmap else items) * blocksize
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
        geom = _GEOM.pack(MAGIC_BITMAP if self.bitmap else MAGIC, self.items, self.blocksize, self.keysize,
                          self.hashsize)
        self.mm = mm
        if mm[:_GEOM.size] == geom and (not self.bitmap or _Q.unpack_from(mm, _OFF_BLOCKS)[0] == self.blocks):
            log(f"cache {label!r}: reusing {self.store} ({self._geti(_OFF_COUNT)} items)")
        else:
            if self.store and mm[:4] in (MAGIC, MAGIC_BITMAP):
                log(f"cache {label!r}: {self.store} has another geometry, starting empty")
            mm[:_GEOM.size] = geom
            _Q.pack_into(mm, _OFF_BLOCKS, self.blocks if self.bitmap else 0)
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
        if self.bitmap:
            mm[self.map_off:self.map_off + self.blocks] = bytes(self.blocks)
            _Q.pack_into(mm, _OFF_POS, 0)

    # ---- bitmap mode: a value's contiguous blocks (lock held) ----------------------------

    def _nblocks(self, n: int) -> int:
        return max(1, -(-n // self.blocksize))      # an empty value still has its block

    def _data_off(self, idx: int) -> int:
        if self.bitmap:
            return self.blocks_off + _Q.unpack_from(self.mm, self.firsts_off + 8 * idx)[0] * self.blocksize
        return self.blocks_off + idx * self.blocksize

    def _claim(self, n: int) -> int:
        """n free contiguous blocks, next-fit from where the last claim ended (uWSGI's
        blocks_bitmap_pos); their first index, or -1."""
        mm, base, blocks = self.mm, self.map_off, self.blocks
        pos = _Q.unpack_from(mm, _OFF_POS)[0]
        zero = bytes(n)
        i = mm.find(zero, base + pos, base + blocks)
        if i < 0 and pos:
            i = mm.find(zero, base, min(base + blocks, base + pos + n - 1))
        if i < 0:
            return -1
        mm[i:i + n] = b"\1" * n
        first = i - base
        _Q.pack_into(mm, _OFF_POS, first + n if first + n < blocks else 0)
        return first

    def _mark(self, first: int, n: int, used: bool) -> None:
        self.mm[self.map_off + first:self.map_off + first + n] = (b"\1" if used else b"\0") * n

    def _free_blocks(self, idx: int, vallen: int) -> None:
        first = _Q.unpack_from(self.mm, self.firsts_off + 8 * idx)[0]
        self._mark(first, self._nblocks(vallen), False)

    def _room(self, idx: int, n: int, now: float) -> tuple[int, int]:
        """Blocks for a new item `idx` (taken, not linked yet): expired items swept, then the
        least recently used evicted (purge_lru), then everything cleared (clear_on_full), as the
        item slots are. (item, first block), or (-1, -1) with idx back on the free list."""
        # a clean header first: a slot above the old watermark may hold a stale one (clear() keeps
        # them), which the sweep below would take for a live item
        _ITEM.pack_into(self.mm, self._ioff(idx), 0, 0, 0, 0, -1, -1, -1, 0.0)
        first = self._claim(n)
        if first < 0 and self._sweep(now):
            first = self._claim(n)
        while first < 0 and self.purge_lru and self._geti(_OFF_LRU_TAIL) >= 0:
            self._remove(self._geti(_OFF_LRU_TAIL))
            first = self._claim(n)
        if first < 0 and self.clear_on_full:
            self._reset()
            idx = self._alloc(now)
            first = self._claim(n)
        if first < 0:
            off = self._ioff(idx)
            _ITEM.pack_into(self.mm, off, 0, 0, 0, 0, self._geti(_OFF_FREE), -1, -1, 0.0)
            self._seti(_OFF_FREE, idx)
            return -1, -1
        _Q.pack_into(self.mm, self.firsts_off + 8 * idx, first)
        return idx, first

    def _regrow(self, idx: int, old_len: int, new_len: int, now: float) -> bool:
        """An updated value's blocks: in place when it fits, else a new run (the old one freed)."""
        mm = self.mm
        slot = self.firsts_off + 8 * idx
        first = _Q.unpack_from(mm, slot)[0]
        old_n, n = self._nblocks(old_len), self._nblocks(new_len)
        if n <= old_n:
            self._mark(first + n, old_n - n, False)
            return True
        self._mark(first, old_n, False)
        new = self._claim(n)
        if new < 0 and self._sweep(now):
            new = self._claim(n)
        if new < 0:
            self._mark(first, old_n, True)      # nothing ran in between: the old run is still free
            return False
        _Q.pack_into(mm, slot, new)
        return True

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
        if self.bitmap:
            self._free_blocks(idx, _vl)
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
        blk = self._data_off(idx)
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
            item = _ITEM.unpack_from(self.mm, self._ioff(idx))
            exp = item[7] if keep_expiry and not expires else (now + expires if expires else 0.0)
            if self.bitmap and not self._regrow(idx, item[3], len(value), now):
                self._bump(_OFF_FULL)
                return False
            self._write(idx, key, h, value, exp, new=False)
            return True
        idx = self._alloc(now)
        if idx >= 0 and self.bitmap:
            idx, _first = self._room(idx, self._nblocks(len(value)), now)
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
            blk = self._data_off(idx)
            return self.mm[blk:blk + vl]

    def exists(self, key: bytes) -> bool:
        if len(key) > self.keysize:
            return False
        with self.lock:
            return self._find(key, zlib.crc32(key), time.time()) >= 0

    def set(self, key: bytes, value: bytes, expires: int = 0, update: bool = False) -> bool:
        if len(value) > self.max_item_size or len(key) > self.keysize or not key:
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
        if len(key) > self.keysize or not key or self.max_item_size < 8:
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
                cur = INT64.unpack_from(self.mm, self._data_off(idx))[0]
            return self._store(key, pack_num(apply_op(op, cur, amount)), expires, update=True, keep_expiry=True)

    def num(self, key: bytes) -> int | None:
        return unpack_num(self.get(key))

    def stats(self) -> dict:
        """uWSGI's stats JSON entry for a cache."""
        with self.lock:
            hits, miss, full = (_U64.unpack_from(self.mm, o)[0] for o in (_OFF_HITS, _OFF_MISS, _OFF_FULL))
            count = self._geti(_OFF_COUNT)
            modified = struct.unpack_from("<d", self.mm, _OFF_MODIFIED)[0]
        return {"name": self.name.decode("utf-8", "replace"), "hash": "crc32", "hashsize": self.hashsize,
                "keysize": self.keysize, "max_items": self.items, "blocks": self.blocks,
                "blocksize": self.blocksize, "items": count, "hits": hits, "miss": miss, "full": full,
                "last_modified_at": int(modified), "purge_lru": int(self.purge_lru),
                "store": self.store or ""}
