"""In-process tests of the shared services: cache semantics, locks and cache across forked
processes, metrics, local and wire RPC, signal routing, the Redis backend."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time

import pytest
from services_helpers import RedisServer, fork_children, make_opts, reset_services

from uwsgid.services import api


@pytest.fixture
def svc():
    """Fresh services: two caches, 2 user locks, two metrics, 3 workers' signal channels."""
    opts = make_opts(cache2=["name=main,items=8,blocksize=32,keysize=16", "name=lru,items=3,blocksize=8,purge_lru=1"],
                     locks=2, metric=["name=hits", "name=temp,type=gauge,initial_value=-5"], processes=3)
    reset_services(opts)
    yield opts
    reset_services()


# ---- cache ------------------------------------------------------------------------------

def test_cache_set_get_update_del(svc):
    assert api.cache_get("k") is None
    assert api.cache_set("k", "v1") is True
    assert api.cache_set("k", "v2") is False          # cache_set never overwrites
    assert api.cache_get("k") == b"v1"
    assert api.cache_update("k", b"v2") is True
    assert api.cache_get(b"k") == b"v2"
    assert api.cache_exists("k") and not api.cache_exists("nope")
    assert api.cache_del("k") is True and api.cache_del("k") is False
    assert api.cache_get("k") is None


def test_cache_binary_values_roundtrip(svc):
    value = bytes(range(32))
    assert api.cache_set("bin", value)
    assert api.cache_get("bin") == value
    assert api.cache_update("empty", b"") and api.cache_get("empty") == b""
    assert api.cache_set("ü", "ö") and api.cache_get("ü") == "ö".encode()


def test_cache_oversized_and_long_key_refused_without_damage(svc):
    assert api.cache_set("a", "x" * 32)
    assert api.cache_set("b", "y" * 33) is False
    assert api.cache_update("a", "z" * 33) is False
    assert api.cache_get("a") == b"x" * 32             # the old value is intact
    assert api.cache_set("k" * 17, "v") is False        # keysize=16
    assert api.cache_get("k" * 17) is None


def test_cache_full_then_freed(svc):
    for i in range(8):
        assert api.cache_set(f"k{i}", str(i))
    assert api.cache_set("one-more", "x") is False
    assert api.cache_update("k3", "33")                 # updating an existing key still works
    assert api.cache_del("k0")
    assert api.cache_set("one-more", "x")
    assert sorted(api.cache_keys()) == sorted([f"k{i}".encode() for i in range(1, 8)] + [b"one-more"])
    stats = {c["name"]: c for c in __import__("uwsgid.services.cache", fromlist=["x"]).all_stats()}
    assert stats["main"]["full"] == 1 and stats["main"]["items"] == 8


def test_cache_expiry_invisible_and_reclaimed(svc):
    for i in range(6):
        assert api.cache_set(f"k{i}", "v")
    assert api.cache_set("short", "v", 1)
    assert api.cache_set("short2", "v", expires=1)
    assert api.cache_get("short") == b"v"
    time.sleep(1.2)
    assert api.cache_get("short") is None and not api.cache_exists("short2")
    assert b"short2" not in api.cache_keys()
    assert api.cache_set("short", "again")              # an expired key can be set again
    assert api.cache_set("new", "v")                    # and its room reused


def test_cache_lru_eviction(svc):
    for k in ("a", "b", "c"):
        assert api.cache_set(k, k, cache="lru")
    api.cache_get("a", cache="lru")                     # b is now the least recently used
    assert api.cache_set("d", "d", cache="lru")
    assert sorted(api.cache_keys("lru")) == [b"a", b"c", b"d"]


def test_cache_math(svc):
    assert api.cache_inc("n") and api.cache_num("n") == 1
    assert api.cache_inc("n", 9) and api.cache_num("n") == 10
    assert api.cache_dec("n", 3) and api.cache_num("n") == 7
    assert api.cache_mul("n", -3) and api.cache_num("n") == -21
    assert api.cache_div("n", 4) and api.cache_num("n") == -5  # C truncation toward zero
    assert len(api.cache_get("n")) == 8 and struct.unpack("<q", api.cache_get("n"))[0] == -5
    assert api.cache_setnum("m", 2**63 - 1) and api.cache_inc("m") and api.cache_getnum("m") == -2**63
    api.cache_set("text", "abc")
    assert api.cache_inc("text") is False and api.cache_get("text") == b"abc"
    assert api.cache_num("text") is None
    with pytest.raises(ValueError, match="division by zero"):
        api.cache_div("n", 0)


def test_cache_clear_and_named_caches(svc):
    api.cache_set("x", "1")
    api.cache_set("x", "2", 0, "lru")
    assert api.cache_get("x", "lru") == b"2"
    assert api.cache_clear() is True
    assert api.cache_keys() == [] and api.cache_get("x", "lru") == b"2"
    assert api.cache_names() == [b"main", b"lru"]


def test_cache_caller_errors(svc):
    with pytest.raises(ValueError, match="no cache named 'nope'"):
        api.cache_get("k", "nope")
    with pytest.raises(ValueError, match="remote caches"):
        api.cache_get("k", "main@127.0.0.1:1")
    with pytest.raises(ValueError, match="expires"):
        api.cache_set("k", "v", -1)
    with pytest.raises(ValueError):
        api.cache_set({}, "v")


def test_cache_not_configured():
    reset_services(make_opts())
    try:
        with pytest.raises(ValueError, match="no cache configured"):
            api.cache_get("k")
    finally:
        reset_services()


def test_cache2_spec_errors():
    from uwsgid.services.cache import CacheError, parse_cache2
    with pytest.raises(CacheError, match="name is required"):
        parse_cache2("items=10")
    with pytest.raises(CacheError, match="items=N"):
        parse_cache2("name=x")
    with pytest.raises(CacheError, match="unknown key 'colour'"):
        parse_cache2("name=x,items=1,colour=red")
    assert parse_cache2("name=x,items=2k,blocksize=1m,purge_lru=1")["blocksize"] == 1 << 20


def test_cache_concurrent_inc_processes_and_threads(svc):
    def body(i):
        def work():
            for _ in range(200):
                assert api.cache_inc("counter")
        ts = [threading.Thread(target=work) for _ in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    assert fork_children(4, body) == [0, 0, 0, 0]
    assert api.cache_num("counter") == 4 * 3 * 200


def test_cache_store_file_survives(tmp_path):
    store = tmp_path / "cache.store"
    reset_services(make_opts(cache2=[f"name=p,items=4,blocksize=16,store={store}"]))
    try:
        api.cache_set("kept", "yes")
        reset_services(make_opts(cache2=[f"name=p,items=4,blocksize=16,store={store}"]))
        assert api.cache_get("kept") == b"yes"
        reset_services(make_opts(cache2=[f"name=p,items=5,blocksize=16,store={store}"]))
        assert api.cache_get("kept") is None                # another geometry starts empty
    finally:
        reset_services()


# ---- locks ------------------------------------------------------------------------------

def test_locks_exclude_across_processes(svc, tmp_path):
    path = tmp_path / "counter"
    path.write_text("0")

    def body(i):
        for _ in range(50):
            api.lock(1)
            try:
                v = int(path.read_text())
                path.write_text(str(v + 1))
            finally:
                api.unlock(1)
    assert fork_children(4, body) == [0] * 4
    assert path.read_text() == "200"


def test_lock_is_locked_and_errors(svc):
    assert not api.is_locked()
    api.lock()
    assert api.is_locked() and api.is_locked(0)
    # another process sees it held
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, b"1" if api.is_locked(0) else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(r, 1) == b"1"
    api.unlock()
    assert not api.is_locked()
    with pytest.raises(ValueError, match="not held"):
        api.unlock(2)
    with pytest.raises(ValueError, match="valid locks are 0..2"):
        api.lock(3)


def test_lock_held_by_another_thread_at_fork_is_free_in_the_child(svc):
    """The child resets each lock's thread lock in place after fork: one that a thread of the
    parent held at that moment (that thread does not exist in the child) can be taken there."""
    held, done = threading.Event(), threading.Event()

    def holder():
        api.lock(1)
        held.set()
        done.wait(10)
        api.unlock(1)

    t = threading.Thread(target=holder)
    t.start()
    assert held.wait(5)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        # the parent's thread holds the fcntl lock too: only the thread-level state is checked
        from uwsgid.services import locks
        lk = locks._user[1]
        ok = lk._t.acquire(timeout=2)
        os.write(w, b"1" if ok else b"0")
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    done.set()
    t.join(5)
    assert os.read(r, 1) == b"1" and status == 0


def test_lock_released_when_holder_dies(svc):
    pid = os.fork()
    if pid == 0:
        api.lock(2)
        os.kill(os.getpid(), 9)
    os.waitpid(pid, 0)
    assert not api.is_locked(2)
    api.lock(2)
    api.unlock(2)


# ---- metrics -----------------------------------------------------------------------------

def test_metrics(svc):
    assert api.metric_get("hits") == 0 and api.metric_get("temp") == -5
    assert api.metric_inc("hits") and api.metric_inc("hits", 4) and api.metric_get("hits") == 5
    assert api.metric_dec("temp", 5) and api.metric_get("temp") == -10
    assert api.metric_mul("temp", 3) and api.metric_div("temp", 4) and api.metric_get("temp") == -7
    assert api.metric_set("temp", 42) and api.metric_get("temp") == 42
    assert api.metric_get("unknown") is None
    with pytest.raises(ValueError, match="no metric named 'unknown'"):
        api.metric_inc("unknown")
    assert fork_children(3, lambda i: [api.metric_inc("hits") for _ in range(100)]) == [0, 0, 0]
    assert api.metric_get("hits") == 305
    stats = {}
    from uwsgid.util import hooks
    hooks.run("stats", stats)
    assert stats["metrics"] == {"hits": {"type": "counter", "value": 305}, "temp": {"type": "gauge", "value": 42}}
    assert [c["name"] for c in stats["caches"]] == ["main", "lru"]
    assert stats["locks"] == [{"user 0": 0}, {"user 1": 0}, {"user 2": 0}]


def test_lock_holder_in_stats(svc):
    from uwsgid.services import locks
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        api.lock(1)
        os.write(w, b"x")
        time.sleep(2)
        os._exit(0)
    os.read(r, 1)
    try:
        assert locks.stats()[1] == {"user 1": pid} and locks.stats()[0] == {"user 0": 0}
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


def test_metrics_dir(tmp_path):
    d = tmp_path / "m"
    reset_services(make_opts(metric=["name=a,initial_value=3"], metrics_dir=str(d)))
    try:
        from uwsgid.services import metrics
        metrics.write_dir()
        assert (d / "a").read_text() == "3"
        api.metric_inc("a", 2)
        metrics.write_dir()
        reset_services(make_opts(metric=["name=a"], metrics_dir=str(d), metrics_dir_restore=True))
        assert api.metric_get("a") == 5
    finally:
        reset_services()


# ---- rpc ---------------------------------------------------------------------------------

def test_rpc_local(svc):
    api.register_rpc("join", lambda *a: b"-".join(a))
    api.register_rpc("text", lambda: "héllo")
    api.register_rpc("none", lambda: None)
    api.register_rpc("boom", lambda: 1 / 0)
    assert api.call("join", "a", b"b", 3) == b"a-b-3"
    assert api.rpc(None, "join", "x") == b"x" and api.rpc("", "join") == b""
    assert api.call("text") == "héllo".encode()
    assert api.call("none") == b""
    assert api.call("missing") is None
    with pytest.raises(api.RpcError, match="'boom' failed: ZeroDivisionError"):
        api.call("boom")
    assert set(api.rpc_list()) >= {b"join", b"text", b"none", b"boom"}
    with pytest.raises(ValueError, match="at most 254"):
        api.call("join", *["a"] * 255)
    assert api.call("join", *["a"] * 254) == b"-".join([b"a"] * 254)


def test_rpc_packet_format():
    from uwsgid.services import rpc
    pkt = rpc.request_packet(b"hello", [b"a", b""])
    assert pkt == bytes([173, 12, 0, 0]) + b"\x05\x00hello\x01\x00a\x00\x00"
    assert rpc.decode_array(pkt[4:]) == [b"hello", b"a", b""]
    assert rpc.response_packet(b"xyz") == bytes([173, 3, 0, 0]) + b"xyz"
    big = rpc.response_packet(b"z" * 70000)
    assert big[0] == 173 and big[3] == 5
    size = struct.unpack("<H", big[1:3])[0]
    assert rpc.decode_vars(big[4:4 + size]) == {b"CONTENT_LENGTH": b"70000"} and big[4 + size:] == b"z" * 70000
    with pytest.raises(ValueError):
        rpc.decode_array(b"\x05\x00ab")


class _FakeReq:
    def __init__(self, packet, modifier2=0):
        self.packet = packet
        self.modifier2 = modifier2
        self.vars = {}
        self.out = bytearray()

    def write_raw(self, data):
        self.out += data


def _serve_rpc_once(listener):
    """A one-shot uwsgi-protocol server driving RpcPlugin (what the worker does for modifier1 173)."""
    from uwsgid.services.rpc import RpcPlugin
    from uwsgid.services.wire import recv_exact
    conn, _ = listener.accept()
    with conn:
        head = recv_exact(conn, 4)
        size = struct.unpack("<H", head[1:3])[0]
        req = _FakeReq(recv_exact(conn, size), head[3])
        RpcPlugin().request(req)
        conn.sendall(bytes(req.out))


@pytest.mark.parametrize("case", ["ok", "big", "error", "missing"])
def test_rpc_remote_roundtrip(svc, case):
    api.register_rpc("echo", lambda *a: b"|".join(a))
    api.register_rpc("big", lambda: b"B" * 100000)
    api.register_rpc("fail", lambda x: (_ for _ in ()).throw(KeyError(x)))
    with socket.socket() as ls:
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        t = threading.Thread(target=_serve_rpc_once, args=(ls,))
        t.start()
        node = "127.0.0.1:%d" % ls.getsockname()[1]
        try:
            if case == "ok":
                assert api.rpc(node, "echo", "a", "b") == b"a|b"
            elif case == "big":
                assert api.rpc(node, "big") == b"B" * 100000
            elif case == "error":
                with pytest.raises(api.RpcError, match="KeyError"):
                    api.rpc(node, "fail", "zz")
            else:
                assert api.rpc(node, "nothere") is None
        finally:
            t.join(5)


def test_rpc_remote_unreachable(svc):
    from helpers import free_port
    with pytest.raises(api.RpcError, match="Connection refused"):
        api.rpc(f"127.0.0.1:{free_port()}", "x")
    with pytest.raises(ValueError, match="host:port"):
        api.rpc("nonsense", "x")


# ---- signals -----------------------------------------------------------------------------

def _spawn_worker(wid, result_w, expect=1, timeout=30.0, ready_w=None):
    """A forked 'worker' wid: takes its channels, runs the handlers of the signals it gets, and
    writes 'wid:signum' lines to result_w (then exits: `expect` signals or `timeout` s after it
    started); a byte on ready_w once its channels and pid are recorded."""
    from uwsgid.services import signal_receiver
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        signal_receiver.worker_started(wid)
        if ready_w is not None:
            os.write(ready_w, b"r")
        got = 0
        deadline = time.monotonic() + timeout
        while got < expect and time.monotonic() < deadline:
            sig = api.signal_wait(timeout=0.2)
            if sig is not None:
                os.write(result_w, f"{wid}:{sig}\n".encode())
                got += 1
    except BaseException:
        import traceback
        traceback.print_exc()
        code = 1
    os._exit(code)


def _collect(r, pids):
    for pid in pids:
        os.waitpid(pid, 0)
    os.set_blocking(r, False)
    data = b""
    try:
        while True:
            chunk = os.read(r, 4096)
            if not chunk:
                break
            data += chunk
    except BlockingIOError:
        pass
    return sorted(line for line in data.decode().split("\n") if line)


def test_signal_targets_routing(svc):
    from uwsgid.services import signals
    for num, target in ((10, "workers"), (11, "worker2"), (12, "worker"), (13, "active-workers"), (14, "")):
        assert api.register_signal(num, target, lambda n: None)
    assert api.signal_registered(10) and not api.signal_registered(99)
    r, w = os.pipe()
    # each worker listens for 2.5 s (the "first available worker" signals may go to any of them)
    ready_r, ready_w = os.pipe()
    pids = [_spawn_worker(wid, w, expect=99, timeout=4, ready_w=ready_w) for wid in (1, 2, 3)]
    os.close(ready_w)
    got = b""
    while len(got) < 3:                    # workers recorded their pids (for active-workers)
        chunk = os.read(ready_r, 3)
        assert chunk, "a worker died before it started"
        got += chunk
    os.close(ready_r)
    assert signals.route(10) == 3          # workers: every worker
    assert signals.route(11) == 1          # worker2 only
    assert signals.route(13) == 3          # active-workers: the 3 live ones
    assert signals.route(12) == 1          # worker: the first available one
    assert signals.route(14) == 1          # "" = worker
    assert signals.route(99) == 0          # unregistered
    os.close(w)
    lines = _collect(r, pids)
    assert [l for l in lines if l.endswith(":10")] == ["1:10", "2:10", "3:10"]
    assert [l for l in lines if l.endswith(":11")] == ["2:11"]
    assert [l for l in lines if l.endswith(":13")] == ["1:13", "2:13", "3:13"]
    assert len([l for l in lines if l.endswith(":12") or l.endswith(":14")]) == 2


def test_signal_bad_registrations(svc):
    with pytest.raises(ValueError, match="out of range"):
        api.register_signal(256, "workers", print)
    with pytest.raises(ValueError, match="not supported"):
        api.register_signal(1, "spooler", print)
    with pytest.raises(ValueError, match="unknown signal target"):
        api.register_signal(1, "everyone", print)
    # a worker that does not exist in this configuration: accepted with a warning, never delivered
    assert api.register_signal(1, "worker7", print)
    from uwsgid.services import signals
    assert signals.route(1) == 0
    with pytest.raises(ValueError, match="callable"):
        api.register_signal(1, "workers", None)


def test_signal_handler_dispatch_and_errors(svc, capfd):
    from uwsgid.services import signals
    seen = []
    api.register_signal(20, "workers", lambda n: seen.append(n))
    api.register_signal(21, "workers", lambda n: 1 / 0)
    signals.dispatch(20)
    signals.dispatch(21)                   # logged, not raised
    signals.dispatch(22)                   # no handler: logged
    assert seen == [20]
    err = capfd.readouterr().err
    assert "error in the handler of signal 21" in err and "ZeroDivisionError" in err
    assert "no handler for signal 22" in err


def test_worker_raised_signal_goes_through_master(svc):
    from uwsgid.services import signal_receiver, timers
    api.register_signal(30, "worker1", lambda n: None)
    timers.start_master()
    r, w = os.pipe()
    receiver = _spawn_worker(1, w, expect=1)
    sender_code = fork_children(1, lambda i: (signal_receiver.worker_started(2), api.signal(30)))
    os.close(w)
    assert sender_code == [0]
    assert _collect(r, [receiver]) == ["1:30"]


def test_timer_and_rb_timer(svc):
    from uwsgid.services import timers
    api.register_signal(40, "worker1", lambda n: None)
    api.register_signal(41, "worker1", lambda n: None)
    r, w = os.pipe()
    receiver = _spawn_worker(1, w, expect=4)
    assert api.add_timer(40, 0.5)
    assert api.add_rb_timer(41, 0.3, 2)
    os.close(w)
    lines = _collect(r, [receiver])
    timers.stop_master()
    assert lines.count("1:41") == 2 and lines.count("1:40") >= 2


def test_timer_registered_from_a_worker(svc):
    from uwsgid.services import signal_receiver, timers
    api.register_signal(42, "worker1", lambda n: None)
    timers.start_master()
    r, w = os.pipe()
    receiver = _spawn_worker(1, w, expect=1)
    assert fork_children(1, lambda i: (signal_receiver.worker_started(3), api.add_rb_timer(42, 0.2, 1))) == [0]
    os.close(w)
    assert _collect(r, [receiver]) == ["1:42"]


def test_file_monitor(svc, tmp_path):
    from uwsgid.services import timers
    f = tmp_path / "watched"
    f.write_text("a")
    api.register_signal(50, "worker1", lambda n: None)
    api.add_file_monitor(50, str(f))
    r, w = os.pipe()
    receiver = _spawn_worker(1, w, expect=1)
    time.sleep(0.3)
    f.write_text("bb")
    os.close(w)
    assert _collect(r, [receiver]) == ["1:50"]
    timers.stop_master()


def test_cron_matching():
    from uwsgid.services.timers import cron_matches
    tm = time.strptime("2026-03-15 10:30", "%Y-%m-%d %H:%M")   # a Sunday
    assert cron_matches((30, 10, 15, 3, 0), tm)
    assert cron_matches((-1, -1, -1, -1, -1), tm)
    assert cron_matches((-15, -5, -1, -1, -1), tm)               # every 15 min, every 5 hours
    assert not cron_matches((-7, -1, -1, -1, -1), tm)
    assert not cron_matches((31, -1, -1, -1, -1), tm)
    with pytest.raises(ValueError, match="minute"):
        api.add_cron(1, 60, -1, -1, -1, -1)


def test_cron_fires_once_per_matching_minute_from_the_first_check(svc):
    # uWSGI (core/cron.c): a signal cron fires at the first check of a matching minute, the
    # minute it was registered in included, then once per minute
    from uwsgid.services import signals, timers
    api.register_signal(60, "worker1", lambda n: None)
    with timers._sched_lock:
        timers._crons.append({"num": 60, "fields": (-1, -1, -1, -1, -1), "last": None})
    sent = []
    orig = signals.route
    signals.route = lambda n: sent.append(n)
    try:
        timers.tick(now_wall=600.0)
        assert sent == [60]
        timers.tick(now_wall=630.0)
        assert sent == [60]
        timers.tick(now_wall=660.0)
        assert sent == [60, 60]
    finally:
        signals.route = orig


# ---- redis backend ---------------------------------------------------------------------------

def test_redis_cache_same_semantics():
    with RedisServer() as rs:
        reset_services(make_opts(cache2=[f"name=shared,backend={rs.url},blocksize=16"]))
        try:
            assert api.cache_set("k", "v1") and not api.cache_set("k", "v2")
            assert api.cache_get("k") == b"v1"
            assert api.cache_update("k", "v2") and api.cache_get("k") == b"v2"
            assert api.cache_set("big", "x" * 17) is False
            assert api.cache_set("t", "v", 1) and api.cache_exists("t")
            assert sorted(api.cache_keys()) == [b"k", b"t"]

            def body(i):
                for _ in range(100):
                    assert api.cache_inc("n")
            assert fork_children(4, body) == [0] * 4
            assert api.cache_num("n") == 400
            assert len(api.cache_get("n")) == 8
            time.sleep(1.2)
            assert api.cache_get("t") is None
            assert api.cache_del("k") and api.cache_clear() and api.cache_keys() == []
        finally:
            reset_services()


def test_redis_cache_down_is_not_fatal(capfd):
    from helpers import free_port
    reset_services(make_opts(cache2=[f"name=gone,backend=redis://127.0.0.1:{free_port()}/0"]))
    try:
        assert api.cache_get("k") is None
        assert api.cache_set("k", "v") is False
        assert "redis backend" in capfd.readouterr().err
    finally:
        reset_services()


def test_legacy_cache_option():
    reset_services(make_opts(cache=3, cache_blocksize=4))
    try:
        assert api.cache_names() == [b"default"]
        assert api.cache_set("a", "1234") and not api.cache_set("b", "12345")
        assert api.cache_get("a", "default") == b"1234"
    finally:
        reset_services()


def test_mule_calls_without_mules(svc):
    with pytest.raises(ValueError, match="no mules are configured"):
        api.mule_msg("x")
    with pytest.raises(ValueError, match="only be called in a mule"):
        api.mule_get_msg(0.1)
    with pytest.raises(ValueError, match="no mules are configured"):
        api.register_signal(5, "mules", print)
    assert api.mule_id() == 0


def test_mule_messages_and_targets():
    from uwsgid.services import mules, signals
    reset_services(make_opts(processes=1, mules=2))
    try:
        assert api.register_signal(5, "mule3", print) and signals.route(5) == 0
        with pytest.raises(ValueError, match="at most 65536"):
            api.mule_msg(b"x" * 65537)
        api.register_signal(6, "mules", lambda n: None)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:                        # "mule 2": a message and a signal
            code = 0
            try:
                mules.mule_started(2)
                os.write(w, b"%d " % (api.signal_wait(timeout=5) or 0))
                os.write(w, api.mule_get_msg(5) or b"timeout")
            except BaseException:
                code = 1
            os._exit(code)
        assert api.mule_msg("hello mule", 2)
        assert signals.route(6) == 2        # both mules' channels (mule 1 is not running)
        os.close(w)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert os.read(r, 100) == b"6 hello mule"
    finally:
        reset_services()


def test_mule_script_runs_by_the_plugin_of_its_extension(capfd):
    import types

    from uwsgid.plugins.contract import Plugin
    from uwsgid.services import mules
    from uwsgid.services.rpc import RpcPlugin
    ran = []

    class LuaLike(Plugin):
        script_extensions = (".lua",)

        def run_script(self, path):
            ran.append(path)
    server = types.SimpleNamespace(plugins={173: RpcPlugin(), 6: LuaLike()})
    mules._run_script(1, "job.lua", server)
    assert ran == ["job.lua"]
    mules._run_script(2, "job.py", server)      # no loaded plugin runs .py files: one line, no run
    assert ran == ["job.lua"]
    assert "mule 2: job.py not run: no loaded plugin runs .py files" in capfd.readouterr().err


class _FakeHttpReq:
    def __init__(self, path, accept=b"*/*"):
        self.vars = {b"PATH_INFO": path, b"HTTP_ACCEPT": accept}
        self.modifier2 = 2
        self.status = None
        self.headers = None
        self.body = b""

    def start_response(self, status, headers):
        self.status, self.headers = status, dict(headers)

    def write(self, data):
        self.body += data


def test_rpc_http_form_modifier2(svc):
    from uwsgid.services.rpc import RpcPlugin
    api.register_rpc("hi", lambda *a: b"hi " + b" ".join(a))
    api.register_rpc("bad", lambda: 1 / 0)
    req = _FakeHttpReq(b"/hi/a/b")
    RpcPlugin().request(req)
    assert req.status == b"200 OK" and req.body == b"hi a b"
    assert req.headers[b"Content-Type"] == b"application/binary"
    req = _FakeHttpReq(b"/hi", accept=b"text/plain")
    RpcPlugin().request(req)
    assert req.headers[b"Content-Type"] == b"text/plain"
    for path, status in ((b"/nothere", b"404 Not Found"), (b"/", b"500 Internal Server Error"),
                         (b"/bad", b"500 Internal Server Error")):
        req = _FakeHttpReq(path)
        RpcPlugin().request(req)
        assert req.status == status


def test_remote_signal_plugin(svc):
    from uwsgid.services import remote_signals, signals
    api.register_signal(33, "workers", lambda n: None)
    sent = []
    orig = signals.route
    signals.route = lambda n: sent.append(n) or 1
    try:
        for num, answer in ((33, 1), (34, 0)):
            req = _FakeReq(b"", modifier2=num)
            remote_signals.RemoteSignalPlugin().request(req)
            assert bytes(req.out) == bytes([255, 0, 0, answer])
    finally:
        signals.route = orig
    assert sent == [33]
