"""The shared-memory cache against a plain-dict model under random operation sequences
(hash chains, free list, watermark, LRU links and expiry must never disagree with the model)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uwsgid.services.cache import Cache, pack_num

KEYS = st.sampled_from([b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h", b"ab", b"ba"])
VALUES = st.binary(max_size=10)
OPS = st.lists(st.one_of(
    st.tuples(st.just("set"), KEYS, VALUES),
    st.tuples(st.just("update"), KEYS, VALUES),
    st.tuples(st.just("del"), KEYS, st.none()),
    st.tuples(st.just("get"), KEYS, st.none()),
    st.tuples(st.just("inc"), KEYS, st.integers(-5, 5)),
    st.tuples(st.just("clear"), st.none(), st.none()),
    st.tuples(st.just("expire"), KEYS, st.none()),
), max_size=60)


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def time(self):
        return self.now


def _check(cache, model):
    assert sorted(cache.keys()) == sorted(model)
    for k, v in model.items():
        assert cache.get(k) == v


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, purge_lru=st.booleans(), hashsize=st.sampled_from([0, 1, 3]))
def test_cache_matches_model(ops, purge_lru, hashsize):
    import uwsgid.services.cache.shm as cmod
    clock = Clock()
    real_time = cmod.time
    cmod.time = type("T", (), {"time": staticmethod(clock.time)})
    try:
        items = 4
        cache = Cache(b"m", items, 8, keysize=4, hashsize=hashsize, purge_lru=purge_lru)
        model: dict[bytes, bytes] = {}
        lru: list[bytes] = []          # least recently used first (only meaningful with purge_lru)

        def touch(k):
            if k in lru:
                lru.remove(k)
            lru.append(k)

        def insert(k, v):
            if len(v) > 8:             # over the blocksize: refused, nothing changes
                return False
            if k not in model and len(model) >= items:
                if not purge_lru:
                    return False
                victim = lru.pop(0)
                del model[victim]
            model[k] = v
            touch(k)
            return True

        for op, k, v in ops:
            if op == "set":
                expected = k not in model and insert(k, v)
                assert cache.set(k, v) == bool(expected)
            elif op == "update":
                assert cache.set(k, v, update=True) == insert(k, v)
            elif op == "del":
                assert cache.delete(k) == (k in model)
                model.pop(k, None)
                if k in lru:
                    lru.remove(k)
            elif op == "get":
                assert cache.get(k) == model.get(k)
                if k in model:
                    touch(k)
            elif op == "inc":
                cur = model.get(k)
                if cur is not None and len(cur) != 8:
                    assert cache.math(k, "+", v) is False
                else:
                    n = (int.from_bytes(cur, "little", signed=True) if cur else 0) + v
                    assert cache.math(k, "+", v) == insert(k, pack_num(n))
            elif op == "clear":
                cache.clear()
                model.clear()
                lru.clear()
            elif op == "expire":
                # give k a 1 s lifetime and let it pass: it must vanish and free its room
                if k in model:
                    assert cache.set(k, model[k], expires=1, update=True)
                    touch(k)
                    clock.now += 2
                    del model[k]
                    lru.remove(k)
            if op != "get":
                _check(cache, model)
                # _check's gets refresh recency in the cache too: mirror that in the model
                for key in list(model):
                    touch(key)
    finally:
        cmod.time = real_time
