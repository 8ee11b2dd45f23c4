"""A cache on a Redis server, for instances on several machines (or behind one nginx upstream)
that must share it: --cache2 name=NAME,backend=redis://HOST:PORT/DB[,prefix=P][,blocksize=B].

Same API and semantics as the shared-memory cache: cache_set does not overwrite (SET NX),
cache_update does, expiry is the key's TTL, values over the blocksize (default 64k) are refused,
and the math functions keep uWSGI's 8-byte int64 values (so a value reads the same whichever
backend wrote it) with an optimistic WATCH/MULTI transaction: concurrent increments from any
number of processes and instances lose nothing. Keys are stored as PREFIX + key; PREFIX
defaults to "NAME:" so that several caches can share one database (prefix= stores bare keys).

A Redis that is down or failing makes the call return None/False and logs one line (at most
every 5 seconds), like a full cache: the request goes on.
"""

from __future__ import annotations

import time

from uwsgid.services.cache.num import apply_op, pack_num, unpack_num
from uwsgid.util.log import log


def shown_url(url: str) -> str:
    """A backend URL fit for the log: its password (user:PASSWORD@ or ?password=) masked."""
    import re
    from urllib.parse import urlsplit, urlunsplit
    try:
        parts = urlsplit(url)
        if parts.password is not None:
            host = parts.netloc.rpartition("@")[2]
            url = urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
    except ValueError:
        pass
    return re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", url)


class RedisCache:
    def __init__(self, name: bytes, url: str, prefix: str | None = None, blocksize: int = 65536,
                 keysize: int = 2048):
        try:
            import redis  # the PyPI client (absolute: not this module), only for this back end
        except ImportError:
            raise ValueError(f"cache {name.decode()!r}: backend={shown_url(url)} needs the 'redis' Python package "
                             "(pip install redis)") from None
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"cache {name.decode()!r}: backend must be redis://HOST:PORT/DB, "
                             f"rediss://... or unix://PATH (got {shown_url(url)!r})")
        self._redis = redis
        self.name = name
        self.url = url
        self.shown_url = shown_url(url)     # for the log and the stats: the password masked
        self.prefix = (name + b":") if prefix is None else prefix.encode()
        self.blocksize = blocksize
        self.keysize = keysize
        self._client = None
        self._last_error = 0.0
        self._stats = {"hits": 0, "miss": 0, "full": 0, "errors": 0}

    @property
    def r(self):
        # redis-py's pool notices a fork (pid change) and reconnects in the child
        if self._client is None:
            self._client = self._redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=3)
        return self._client

    def _k(self, key: bytes) -> bytes:
        return self.prefix + key

    def _failed(self, exc: Exception) -> None:
        self._stats["errors"] += 1
        now = time.monotonic()
        if now - self._last_error > 5:
            self._last_error = now
            log(f"cache {self.name.decode()!r}: redis backend {self.shown_url} failed: {exc}")

    def check(self) -> None:
        """At start-up: say early (not fatally) when the server is not reachable."""
        try:
            self.r.ping()
        except self._redis.RedisError as exc:
            log(f"cache {self.name.decode()!r}: redis backend {self.shown_url} is not reachable yet: {exc}")

    def get(self, key: bytes) -> bytes | None:
        if len(key) > self.keysize:
            return None
        try:
            v = self.r.get(self._k(key))
        except self._redis.RedisError as exc:
            self._failed(exc)
            return None
        self._stats["hits" if v is not None else "miss"] += 1
        return v

    def exists(self, key: bytes) -> bool:
        try:
            return bool(self.r.exists(self._k(key)))
        except self._redis.RedisError as exc:
            self._failed(exc)
            return False

    def set(self, key: bytes, value: bytes, expires: int = 0, update: bool = False) -> bool:
        if len(value) > self.blocksize or len(key) > self.keysize or not key:
            return False
        try:
            ok = self.r.set(self._k(key), value, ex=expires or None, nx=not update)
        except self._redis.RedisError as exc:
            self._failed(exc)
            return False
        return bool(ok)

    def delete(self, key: bytes) -> bool:
        try:
            return self.r.delete(self._k(key)) > 0
        except self._redis.RedisError as exc:
            self._failed(exc)
            return False

    def _scan(self):
        pattern = b"".join(b"\\" + bytes([c]) if c in b"*?[]\\" else bytes([c]) for c in self.prefix) + b"*"
        return self.r.scan_iter(match=pattern, count=500)

    def clear(self) -> None:
        try:
            batch = []
            for k in self._scan():
                batch.append(k)
                if len(batch) >= 500:
                    self.r.delete(*batch)
                    batch = []
            if batch:
                self.r.delete(*batch)
        except self._redis.RedisError as exc:
            self._failed(exc)

    def keys(self) -> list[bytes]:
        n = len(self.prefix)
        try:
            return [k[n:] for k in self._scan()]
        except self._redis.RedisError as exc:
            self._failed(exc)
            return []

    def math(self, key: bytes, op: str, amount: int, expires: int = 0) -> bool:
        if len(key) > self.keysize or not key:
            return False
        k = self._k(key)
        try:
            with self.r.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(k)
                        v = pipe.get(k)
                        if v is not None and len(v) != 8:
                            pipe.unwatch()
                            return False
                        cur = unpack_num(v) if v is not None else 0
                        new = pack_num(apply_op(op, cur, amount))
                        pipe.multi()
                        if expires:
                            pipe.set(k, new, ex=expires)
                        elif v is not None:
                            pipe.set(k, new, keepttl=True)
                        else:
                            pipe.set(k, new)
                        pipe.execute()
                        return True
                    except self._redis.WatchError:
                        continue
        except self._redis.RedisError as exc:
            self._failed(exc)
            return False

    def num(self, key: bytes) -> int | None:
        return unpack_num(self.get(key))

    def stats(self) -> dict:
        return {"name": self.name.decode("utf-8", "replace"), "backend": self.shown_url,
                "prefix": self.prefix.decode("utf-8", "replace"), "blocksize": self.blocksize,
                "keysize": self.keysize, **self._stats}
