"""--cache2 ...,blocks=N,bitmap=1 (uWSGI's bitmap cache): values spanning contiguous blocks.

A model check under random operations (what the cache holds always equals what it said yes to;
the block map always marks exactly the blocks of the items held, no two items sharing one), the
limits (blocks x blocksize, contiguity, blocks >= items), and a real instance started with the
searxng line (tests/data/real-configs 074/127) storing a value of many blocks from the app."""

from __future__ import annotations

import pytest
from helpers import Server, free_port, http_get
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uwsgid.services.cache import Cache, CacheError, parse_cache2

KEYS = st.sampled_from([b"a", b"b", b"c", b"d", b"e", b"f"])
VALUES = st.binary(max_size=40)          # 0..5 blocks of 8
OPS = st.lists(st.one_of(
    st.tuples(st.just("set"), KEYS, VALUES),
    st.tuples(st.just("update"), KEYS, VALUES),
    st.tuples(st.just("del"), KEYS, st.none()),
    st.tuples(st.just("inc"), KEYS, st.integers(-3, 3)),
    st.tuples(st.just("clear"), st.none(), st.none()),
    st.tuples(st.just("setx"), KEYS, VALUES),          # expires in 1 s
    st.tuples(st.just("tick"), st.none(), st.none()),  # 2 s pass
), max_size=60)


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def time(self):
        return self.now


def _held_blocks(cache: Cache) -> list[int]:
    """Block indexes the cache's items own (through their first block and length)."""
    from uwsgid.services.cache.shm import _F_USED, _ITEM, _OFF_TOP, _Q
    owned = []
    for idx in range(cache._geti(_OFF_TOP)):
        _h, _kl, fl, vl, *_ = _ITEM.unpack_from(cache.mm, cache._ioff(idx))
        if fl & _F_USED:
            first = _Q.unpack_from(cache.mm, cache.firsts_off + 8 * idx)[0]
            owned.extend(range(first, first + cache._nblocks(vl)))
    return owned


def _check(cache: Cache, model: dict) -> None:
    assert sorted(cache.keys()) == sorted(model)
    for k, v in model.items():
        assert cache.get(k) == v
    owned = _held_blocks(cache)
    assert len(owned) == len(set(owned)), "two items share a block"
    marked = [i for i in range(cache.blocks) if cache.mm[cache.map_off + i]]
    assert sorted(owned) == marked, "the block map disagrees with the items"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, purge_lru=st.booleans(), clear_on_full=st.booleans())
def test_bitmap_cache_matches_model(ops, purge_lru, clear_on_full):
    import uwsgid.services.cache.shm as cmod
    clock = Clock()
    real_time = cmod.time
    cmod.time = type("T", (), {"time": staticmethod(clock.time)})
    try:
        _run_model(ops, purge_lru, clear_on_full, clock)
    finally:
        cmod.time = real_time


def _run_model(ops, purge_lru, clear_on_full, clock):
    cache = Cache(b"m", 4, 8, keysize=4, purge_lru=purge_lru, clear_on_full=clear_on_full,
                  blocks=10, bitmap=True)
    model: dict[bytes, bytes] = {}
    expiring: dict[bytes, float] = {}
    for op, k, v in ops:
        before = dict(model)
        if op == "tick":
            clock.now += 2
            for key, at in list(expiring.items()):
                if at <= clock.now:
                    model.pop(key, None)
                    del expiring[key]
        elif op in ("set", "update", "setx"):
            ok = cache.set(k, v, expires=1 if op == "setx" else 0, update=(op == "update"))
            if op != "update" and k in before:
                assert not ok
            if ok:
                model[k] = v
                if op == "setx":
                    expiring[k] = clock.now + 1
                else:
                    expiring.pop(k, None)
            # evictions (purge_lru, clear_on_full) only ever drop items, never change them
            model = {key: val for key, val in model.items() if key in set(cache.keys())}
            if not ok and not (purge_lru or clear_on_full):
                assert model == before
        elif op == "del":
            assert cache.delete(k) == (k in model)
            model.pop(k, None)
            expiring.pop(k, None)
        elif op == "inc":
            ok = cache.math(k, "+", v)
            cur = model.get(k)
            if cur is not None and len(cur) != 8:
                assert not ok
            if ok:
                import struct
                base = struct.unpack("<q", cur)[0] if cur is not None else 0
                model[k] = struct.pack("<q", base + v)
            model = {key: val for key, val in model.items() if key in set(cache.keys())}
        elif op == "clear":
            cache.clear()
            model.clear()
            expiring.clear()
        expiring = {key: at for key, at in expiring.items() if key in model}
        _check(cache, model)


def test_values_span_blocks_up_to_blocks_times_blocksize():
    cache = Cache(b"big", 4, 100, blocks=10, bitmap=True)
    assert cache.max_item_size == 1000
    assert cache.set(b"k", b"x" * 1000)             # every block
    assert cache.get(b"k") == b"x" * 1000
    assert not cache.set(b"j", b"y")                # no block left: full
    assert cache.stats()["full"] == 1
    assert not cache.set(b"k2", b"z" * 1001)        # over blocks x blocksize: refused
    assert cache.set(b"k", b"small", update=True)   # shrinks in place, frees the rest
    assert cache.set(b"j", b"y" * 900)
    assert cache.stats()["blocks"] == 10
    classic = Cache(b"classic", 4, 100)
    assert not classic.set(b"k", b"x" * 101)        # without bitmap: one block per value


def test_contiguity_is_required():
    cache = Cache(b"frag", 5, 10, blocks=5, bitmap=True)
    for k in (b"a", b"b", b"c", b"d", b"e"):
        assert cache.set(k, b"1234567890")          # one block each
    cache.delete(b"b")
    cache.delete(b"d")                               # two free blocks, not adjacent
    assert not cache.set(b"x", b"y" * 20)            # needs two contiguous blocks
    cache.delete(b"c")
    assert cache.set(b"x", b"y" * 20)
    assert cache.get(b"x") == b"y" * 20


def test_store_file_keeps_bitmap_values(tmp_path):
    path = str(tmp_path / "c.store")
    c = Cache(b"s", 4, 16, blocks=8, bitmap=True, store=path)
    assert c.set(b"k", b"v" * 100)
    c.mm.flush()
    again = Cache(b"s", 4, 16, blocks=8, bitmap=True, store=path)
    assert again.get(b"k") == b"v" * 100
    other = Cache(b"s", 4, 16, blocks=9, bitmap=True, store=path)   # another geometry: empty
    assert other.get(b"k") is None


def test_parse_and_limits():
    conf = parse_cache2("name=searxcache,items=2000,blocks=2000,blocksize=4096,bitmap=1")
    assert conf["blocks"] == 2000 and conf["bitmap"] is True
    with pytest.raises(CacheError, match="blocks"):
        Cache(b"x", 10, 64, blocks=5, bitmap=True)
    with pytest.raises(CacheError, match="unknown key 'bogus'"):
        parse_cache2("name=x,items=1,bogus=1")


APP = """
import uwsgi
def application(env, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    big = b'%d' % 7 * 20000                      # 20000 bytes: five 4096-byte blocks
    stored = uwsgi.cache_update('big', big, 0, 'searxcache')
    back = uwsgi.cache_get('big', 'searxcache')
    return [b'%s %d' % (b'stored' if stored else b'refused', len(back or b''))]
"""


def test_real_instance_with_searxng_cache_line(tmp_path):
    app = tmp_path / "app.py"
    app.write_text(APP)
    port = free_port()
    args = ["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", str(app),
            "--master", "--processes", "1", "--strict",
            "--cache2", "name=searxcache,items=2000,blocks=2000,blocksize=4096,bitmap=1"]
    with Server(args, port) as s:
        status, _h, body = http_get(port, "/")
        log = s.log()
    assert status == 200, log
    assert body == b"stored 20000", (body, log)
    assert "bitmap of 2000 blocks" in log
    assert "not supported" not in log


def test_stale_slot_after_clear_is_not_swept(monkeypatch):
    """clear() keeps the item headers: a slot handed out again must not look like a live, expired
    item to the sweep that runs when the blocks are short."""
    import uwsgid.services.cache.shm as cmod
    clock = Clock()
    monkeypatch.setattr(cmod, "time", type("T", (), {"time": staticmethod(clock.time)}))
    cache = Cache(b"st", 4, 8, blocks=10, bitmap=True)
    for k in (b"a", b"b", b"c"):
        assert cache.set(k, b"x", expires=1)
    clock.now += 5                              # all three expired, their headers still marked used
    cache.clear()
    assert cache.set(b"p", b"y" * 40) and cache.set(b"q", b"z" * 40)     # every block taken
    assert not cache.set(b"r", b"w")            # slot 2 (stale) is handed out, the sweep finds nothing
    _check(cache, {b"p": b"y" * 40, b"q": b"z" * 40})
    assert cache.set(b"r", b"w", update=True) is False
    cache.delete(b"p")
    assert cache.set(b"r", b"w")
    _check(cache, {b"q": b"z" * 40, b"r": b"w"})
