"""The shared services across runtimes in real processes: one instance (-p 2 --threads 2) serving
examples/services_app.lua (modifier1 6) and examples/services_app.py (modifier1 0) on a uwsgi
socket; then two instances behind nginx sharing a Redis-backed cache."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import ROOT, Server, free_port, uwsgi_http_get
from nginx import Nginx, example_conf
from services_helpers import RedisServer, instance

from uwsgid.services import api

LUA, PY = 6, 0


def _wait_for(fn, timeout=30.0, interval=0.1):
    """fn() until truthy (generous: a loaded machine delays timers and respawns); its last value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    return last


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port, stats = free_port(), free_port()
    log = tmp_path_factory.mktemp("services") / "server.log"
    args = ["--master", "-p", "2", "--threads", "2", "--socket", f"127.0.0.1:{port}",
            "--stats", f"127.0.0.1:{stats}",
            "--lua", "examples/services_app.lua", "--wsgi-file", "examples/services_app.py",
            "--cache2", "name=shared,items=500,blocksize=4096", "--cache2", "name=small,items=4,blocksize=64",
            "--locks", "2", "--metric", "name=requests_total", "--metric", "name=temp,type=gauge,initial_value=20",
            "--mule=examples/services_mule.py", "--mule=examples/services_mule.lua", "--mules", "1"]
    with instance(args, port, log) as inst:
        inst.stats_port = stats
        yield inst


def get(server, path, modifier1):
    return uwsgi_http_get(server.port, path, modifier1)


def test_lua_sets_python_reads_and_reverse(server):
    assert get(server, "/set?k=from_lua&v=hello%20py", LUA) == (200, b"True")
    assert get(server, "/get?k=from_lua", PY) == (200, b"hello py")
    assert get(server, "/set?k=from_py&v=hello%20lua", PY) == (200, b"True")
    assert get(server, "/get?k=from_py", LUA) == (200, b"hello lua")
    # byte for byte: every byte value, each way
    assert get(server, "/setbin?k=bin_lua", LUA) == (200, b"True")
    assert get(server, "/setbin?k=bin_py", PY) == (200, b"True")
    assert get(server, "/get?k=bin_lua", PY) == (200, bytes(range(256)))
    assert get(server, "/get?k=bin_py", LUA) == (200, bytes(range(256)))
    # cache_set does not overwrite (either runtime); cache_update does
    assert get(server, "/set?k=from_lua&v=other", PY) == (200, b"False")
    assert get(server, "/update?k=from_lua&v=other", PY) == (200, b"True")
    assert get(server, "/get?k=from_lua", LUA) == (200, b"other")
    assert get(server, "/del?k=from_lua", LUA) == (200, b"True")
    assert get(server, "/get?k=from_lua", PY)[0] == 404


def test_concurrent_inc_from_both_runtimes_loses_nothing(server):
    def hit(i):
        status, body = get(server, "/inc?k=counter&n=10", LUA if i % 2 else PY)
        return status
    with ThreadPoolExecutor(8) as ex:
        statuses = list(ex.map(hit, range(200)))
    assert statuses == [200] * 200
    assert get(server, "/num?k=counter", PY) == (200, b"2000")
    assert get(server, "/num?k=counter", LUA) == (200, b"2000")


def test_expiry_seen_by_both_runtimes(server):
    assert get(server, "/set?k=short&v=x&e=1", LUA) == (200, b"True")
    assert get(server, "/get?k=short", PY) == (200, b"x")
    time.sleep(1.5)
    assert get(server, "/get?k=short", PY)[0] == 404
    assert get(server, "/get?k=short", LUA)[0] == 404
    assert get(server, "/set?k=short&v=y", PY) == (200, b"True")   # an expired key is free again


def test_oversized_values_refused_without_damage(server):
    assert get(server, "/setbig?k=big&size=4096", PY) == (200, b"True")
    assert get(server, "/setbig?k=big&size=4097", LUA) == (200, b"False")
    assert get(server, "/setbig?k=big&size=5000", PY) == (200, b"False")
    status, body = get(server, "/get?k=big", LUA)
    assert status == 200 and body == b"x" * 4096


def test_rpc_between_runtimes_with_errors(server):
    assert get(server, "/call?f=lua_concat&a=x&a=y&a=z", PY) == (200, b"x+y+z")
    assert get(server, "/call?f=py_upper&a=ab&a=cd", LUA) == (200, b"AB CD")
    status, body = get(server, "/call?f=py_fail&a=1", LUA)
    assert status == 500 and b"python says no: 1" in body and b"ValueError" in body
    status, body = get(server, "/call?f=lua_fail&a=2", PY)
    assert status == 500 and b"lua says no: 2" in body
    assert get(server, "/call?f=nothere", PY)[0] == 404
    assert get(server, "/call?f=nothere", LUA)[0] == 404


@pytest.mark.parametrize("args", [(), ("a",), ("a", "b"), ("a", "b", "c")])
def test_rpc_over_the_uwsgi_protocol(server, args):
    node = f"127.0.0.1:{server.port}"
    assert api.rpc(node, "lua_concat", *args) == "+".join(args).encode()
    assert api.rpc(node, "py_upper", *args) == b" ".join(a.upper().encode() for a in args)


def test_rpc_over_the_network_errors_and_app_side(server):
    node = f"127.0.0.1:{server.port}"
    with pytest.raises(api.RpcError, match="lua says no: q"):
        api.rpc(node, "lua_fail", "q")
    with pytest.raises(api.RpcError, match="python says no"):
        api.rpc(node, "py_fail", "q")
    assert api.rpc(node, "nothere") is None
    # an app calling another worker of its own instance through the socket
    assert get(server, f"/rpc?node={node}&f=lua_concat&a=1&a=2&a=3", PY) == (200, b"1+2+3")
    assert get(server, f"/rpc?node={node}&f=py_upper&a=q", LUA) == (200, b"Q")


def test_timers_fire_lua_and_python_handlers_in_the_intended_worker(server):
    # services_app.py: signal 21 -> worker1 (Python); services_app.lua: signal 22 -> worker2 (Lua)
    assert _wait_for(lambda: get(server, "/get?k=py_timer", PY) == (200, b"1:21"))
    assert _wait_for(lambda: get(server, "/get?k=lua_timer", LUA) == (200, b"2:22"))
    n1 = int(get(server, "/num?k=py_timer_count", PY)[1])
    assert _wait_for(lambda: int(get(server, "/num?k=py_timer_count", PY)[1]) >= n1 + 2)


def test_signal_from_one_runtime_runs_handlers_of_the_other_in_every_worker(server):
    def counts(prefix):
        return [get(server, f"/num?k={prefix}_bcast_w{w}", PY)[1] for w in (1, 2)]
    before_py, before_lua = counts("py"), counts("lua")
    assert get(server, "/signal?n=23", LUA) == (200, b"raised")   # Python handlers, "workers"
    assert get(server, "/signal?n=24", PY) == (200, b"raised")    # Lua handlers, "workers"

    def bumped(before, prefix):
        now = counts(prefix)
        return all(int(a) == (0 if b == b"None" else int(b)) + 1 for a, b in zip(
            [x if x != b"None" else b"0" for x in now], before))
    assert _wait_for(lambda: bumped(before_py, "py")), counts("py")
    assert _wait_for(lambda: bumped(before_lua, "lua")), counts("lua")


def test_remote_signal_over_the_uwsgi_protocol(server):
    """modifier1 110 (needs the services' RemoteSignalPlugin in the modifier map)."""
    node = f"127.0.0.1:{server.port}"
    before = get(server, "/num?k=py_bcast_w1", PY)[1]
    api.signal(23, node)                                 # registered: delivered to every worker
    assert _wait_for(lambda: get(server, "/num?k=py_bcast_w1", PY)[1] != before)
    with pytest.raises(ValueError, match="rejected signal 99"):
        api.signal(99, node)                             # not registered there: rejected


@pytest.mark.skipif(not shutil.which("uwsgi-core"), reason="Debian's uwsgi-core is not installed")
def test_real_uwsgi_sends_a_remote_signal(server):
    before = get(server, "/num?k=py_bcast_w2", PY)[1]
    r = subprocess.run(["uwsgi-core", "--plugin", "signal", "--signal", f"127.0.0.1:{server.port},23"],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _wait_for(lambda: get(server, "/num?k=py_bcast_w2", PY)[1] != before)


def test_locks_exclude_across_processes_and_runtimes(server):
    results = {}

    def hold_py():
        results["py"] = get(server, "/lock?n=1&hold=1.5", PY)

    t = threading.Thread(target=hold_py)
    t.start()
    time.sleep(0.4)
    status, body = get(server, "/lock?n=1&hold=0", LUA)
    t.join(10)
    assert status == 200 and results["py"][0] == 200
    py_got, py_released = map(float, results["py"][1].split())
    lua_got, _ = map(float, body.split())
    assert lua_got >= py_released - 0.001, (py_got, py_released, lua_got)
    # lock 0 and lock 2 exist, lock 3 does not (--locks 2): a clear error, a 500
    assert get(server, "/lock?n=3", PY)[0] == 500


def _stats(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        data = b""
        while True:
            c = s.recv(65536)
            if not c:
                break
            data += c
    if data.startswith(b"HTTP/"):
        data = data.split(b"\r\n\r\n", 1)[1]
    return json.loads(data)


def test_metrics_in_the_stats_json(server):
    for _ in range(3):
        assert get(server, "/metric?name=requests_total&op=inc", PY)[0] == 200
    assert get(server, "/metric?name=requests_total&op=inc&v=2", LUA)[0] == 200
    assert get(server, "/metric?name=temp&op=dec&v=5", LUA) == (200, b"15")
    assert get(server, "/metric?name=requests_total", LUA) == (200, b"5")
    stats = _stats(server.stats_port)
    assert stats["metrics"]["requests_total"] == {"type": "counter", "value": 5}
    assert stats["metrics"]["temp"] == {"type": "gauge", "value": 15}
    caches = {c["name"]: c for c in stats["caches"]}
    assert caches["shared"]["max_items"] == 500 and caches["small"]["blocksize"] == 64


def test_respawned_worker_keeps_its_signals_and_the_cache(server):
    """A worker killed (as harakiri would) is respawned by the master with the same signal
    channel: worker 1's timer handler runs again in the new process; the cache is intact."""
    import os
    import signal as _signal
    assert get(server, "/update?k=survivor&v=still%20here", LUA) == (200, b"True")
    workers = {w["id"]: w["pid"] for w in _stats(server.stats_port)["workers"]}
    os.kill(workers[1], _signal.SIGKILL)

    def respawned():
        w = {w["id"]: w["pid"] for w in _stats(server.stats_port)["workers"]}
        return w.get(1) not in (None, 0, workers[1])
    assert _wait_for(respawned)
    assert get(server, "/update?k=py_timer&v=reset", PY) == (200, b"True")
    assert _wait_for(lambda: get(server, "/get?k=py_timer", PY) == (200, b"1:21"))
    assert get(server, "/get?k=survivor", PY) == (200, b"still here")


def test_mules_run_python_and_lua_scripts_and_take_messages(server):
    assert _wait_for(lambda: get(server, "/get?k=py_mule_ready", PY)[0] == 200)
    assert _wait_for(lambda: get(server, "/get?k=lua_mule_ready", PY) == (200, b"2"))
    assert get(server, "/mule_msg?v=for%20python&mule=1", LUA) == (200, b"True")
    assert get(server, "/mule_msg?v=for%20lua&mule=2", PY) == (200, b"True")
    assert _wait_for(lambda: get(server, "/get?k=py_mule_last", PY) == (200, b"for python"))
    assert _wait_for(lambda: get(server, "/get?k=lua_mule_last", LUA) == (200, b"for lua"))
    assert get(server, "/mule_msg?v=x&mule=9", PY)[0] == 500     # no mule 9: a clear error


def test_signals_to_mules(server):
    def num(k):
        status, body = get(server, f"/num?k={k}", PY)
        return 0 if body == b"None" else int(body)
    assert _wait_for(lambda: get(server, "/get?k=lua_mule_ready", PY)[0] == 200)
    before = {k: num(k) for k in ("py_mule_signals", "lua_mule_signals_2", "mule_bcast_1", "mule_bcast_2",
                                  "mule_bcast_3")}
    assert get(server, "/signal?n=25", LUA)[0] == 200    # mule1 (handler registered by the mule script)
    assert get(server, "/signal?n=26", PY)[0] == 200     # mule2 (a Lua handler in the Lua mule)
    assert get(server, "/signal?n=27", PY)[0] == 200     # mules (the app's handler, inherited by all)
    assert _wait_for(lambda: all(num(k) == v + 1 for k, v in before.items())), \
        ({k: num(k) for k in before}, before)


def test_dead_mule_is_respawned(server):
    import os
    import signal as _signal
    assert _wait_for(lambda: get(server, "/get?k=py_mule_ready", PY)[0] == 200)
    mid, pid = map(int, get(server, "/get?k=py_mule_ready", PY)[1].split(b":"))
    os.kill(pid, _signal.SIGKILL)

    def new_pid():
        status, body = get(server, "/get?k=py_mule_ready", PY)
        return status == 200 and int(body.split(b":")[1]) != pid
    assert _wait_for(new_pid)
    assert get(server, "/mule_msg?v=after%20respawn&mule=1", PY) == (200, b"True")
    assert _wait_for(lambda: get(server, "/get?k=py_mule_last", PY) == (200, b"after respawn"))
    assert "mule 1 (pid: %d) died" % pid in server.log()


# ---- interoperability with real uWSGI (Debian's uwsgi-core) ------------------------------------

REAL_APP = '''
import uwsgi
uwsgi.register_rpc("real_hello", lambda *a: b"real:" + b",".join(a))
def application(e, sr):
    node = e["QUERY_STRING"].encode()   # uWSGI's Python 3 plugin wants bytes here
    r = uwsgi.rpc(node, b"lua_concat", b"u", b"w", b"s")
    sr("200 OK", [("Content-Type", "text/plain")])
    return [r or b"None"]
'''


@pytest.mark.skipif(not shutil.which("uwsgi-core"), reason="Debian's uwsgi-core is not installed")
def test_rpc_interop_with_real_uwsgi(server, tmp_path):
    app = tmp_path / "real_app.py"
    app.write_text(REAL_APP)
    port, http_port = free_port(), free_port()
    real = Server(["--plugin", "python3,rpc,http", "--socket", f"127.0.0.1:{port}",
                   "--http-socket", f"127.0.0.1:{http_port}", "--wsgi-file", str(app), "--master", "-p", "1"],
                  http_port, binary="uwsgi-core", log_path=tmp_path / "real.log")
    with real:
        # ours -> real uWSGI
        assert get(server, f"/rpc?node=127.0.0.1:{port}&f=real_hello&a=x&a=y", PY) == (200, b"real:x,y")
        assert api.rpc(f"127.0.0.1:{port}", "real_hello") == b"real:"
        # real uWSGI -> ours (the Lua function, through modifier1 173)
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
        c.request("GET", f"/?127.0.0.1:{server.port}")
        assert c.getresponse().read() == b"u+w+s"
        c.close()


# ---- the distributed case: two instances, one nginx upstream, one Redis --------------------------

@pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server is not installed")
def test_two_instances_behind_nginx_share_the_redis_cache(tmp_path):
    with RedisServer() as rs:
        p1, p2, front = free_port(), free_port(), free_port()
        common = ["--master", "-p", "2", "--threads", "2",
                  "--lua", "examples/services_app.lua", "--wsgi-file", "examples/services_app.py",
                  "--cache2", f"name=shared,backend={rs.url},blocksize=4096",
                  "--cache2", "name=local,items=100,blocksize=1024"]
        env = {"SERVICES_CACHE": "shared"}
        conf = example_conf("services_nginx.conf", front, p1, p2)
        with instance(["--socket", f"127.0.0.1:{p1}", *common], p1, tmp_path / "i1.log", env), \
                instance(["--socket", f"127.0.0.1:{p2}", *common], p2, tmp_path / "i2.log", env), \
                Nginx(tmp_path / "nginx", conf, front):
            import http.client

            def fetch(path):
                c = http.client.HTTPConnection("127.0.0.1", front, timeout=10)
                try:
                    c.request("GET", path)
                    r = c.getresponse()
                    return r.status, r.read()
                finally:
                    c.close()

            # both instances answer (round robin), and their masters differ
            masters = {fetch("/py/wid")[1].split()[2] for _ in range(6)}
            assert len(masters) == 2
            assert fetch("/py/set?k=dist&v=from%20python") == (200, b"True")
            for _ in range(4):                      # read from Lua on both instances
                assert fetch("/lua/get?k=dist") == (200, b"from python")
            assert fetch("/lua/setbin?k=bin") == (200, b"True")
            assert fetch("/py/get?k=bin") == (200, bytes(range(256)))
            assert fetch("/py/setbig?k=huge&size=4097") == (200, b"False")

            with ThreadPoolExecutor(8) as ex:
                statuses = list(ex.map(lambda i: fetch(("/lua" if i % 2 else "/py") + "/inc?k=hits&n=5")[0],
                                       range(80)))
            assert statuses == [200] * 80
            assert fetch("/py/num?k=hits") == (200, b"400")
            assert fetch("/lua/num?k=hits") == (200, b"400")
            assert fetch("/py/set?k=ttl&v=1&e=1") == (200, b"True")
            time.sleep(1.5)
            assert fetch("/lua/get?k=ttl")[0] == 404


@pytest.mark.parametrize("args,message", [
    (["--cache2", "items=10"], "--cache2 items=10: a name is required (name=NAME)"),
    (["--cache2", "name=x,items=10,colour=red"], "unknown key 'colour'"),
    (["--cache2", "name=x,items=10", "--cache2", "name=x,items=5"], "cache 'x' declared twice"),
    (["--metric", "name=m,type=bogus"], "--metric m: unknown type 'bogus'"),
    (["--locks", "-1"], "--locks must be >= 0"),
])
def test_bad_service_options_are_one_clear_line(args, message):
    from services_helpers import uwsgi_command
    port = free_port()
    r = subprocess.run(uwsgi_command() + ["--master", "--socket", f"127.0.0.1:{port}", *args],
                       capture_output=True, text=True, timeout=60, cwd=ROOT, stdin=subprocess.DEVNULL)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert message in out and "Traceback" not in out, out


def test_mules_leave_on_reload_and_come_back(tmp_path):
    import os
    import re
    import signal as _signal
    port = free_port()
    args = ["--master", "-p", "1", "--socket", f"127.0.0.1:{port}", "--wsgi-file", "examples/services_app.py",
            "--cache2", "name=shared,items=10,blocksize=128", "--mules", "2"]
    with instance(args, port, tmp_path / "reload.log") as inst:
        def mule_pids():
            return [int(p) for p in re.findall(r"spawned uWSGI mule \d \(pid: (\d+)\)", inst.log())]
        assert _wait_for(lambda: len(mule_pids()) == 2)
        old = mule_pids()
        os.kill(inst.proc.pid, _signal.SIGHUP)
        assert _wait_for(lambda: len(mule_pids()) == 4), inst.log()

        def gone(pid):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return open(f"/proc/{pid}/stat").read().split()[2] == "Z"
        # whether the reload stops them or they see the master's channel close, none is left
        assert _wait_for(lambda: all(gone(p) for p in old))


DECORATED_APP = '''
import uwsgi
from uwsgidecorators import lock, mulefunc, rpc, signal, timer


@timer(1)
def tick(num):
    uwsgi.cache_inc("ticks")


@rpc("double")
def double(x):
    return x * 2


@mulefunc
def in_mule(v):
    uwsgi.cache_update("mulefunc", "%s from mule %d" % (v.decode() if isinstance(v, bytes) else v, uwsgi.mule_id()))


@lock
def locked():
    return uwsgi.is_locked(0)


@signal(40, target="workers")
def sig40(num):
    uwsgi.cache_inc("sig40_w%d" % uwsgi.worker_id())


def application(e, sr):
    p = e["PATH_INFO"]
    sr("200 OK", [("Content-Type", "text/plain")])
    if p == "/mule":
        in_mule("hello")
    elif p == "/locked":
        return [str(locked()).encode()]
    elif p == "/sig":
        uwsgi.signal(40)
    elif p == "/get":
        return [uwsgi.cache_get(e["QUERY_STRING"]) or b"None"]
    elif p == "/num":
        return [str(uwsgi.cache_num(e["QUERY_STRING"])).encode()]
    elif p == "/call":
        return [uwsgi.call("double", b"ab")]
    return [b"ok"]
'''


@pytest.mark.skipif(__import__("importlib").util.find_spec("uwsgidecorators") is None,
                    reason="PyPI's uwsgidecorators is not installed")
def test_uwsgidecorators_app(tmp_path):
    """A uWSGI user's app written with uwsgidecorators (timer, rpc, mulefunc, lock, signal)."""
    app = tmp_path / "decorated.py"
    app.write_text(DECORATED_APP)
    port = free_port()
    args = ["--master", "-p", "2", "--socket", f"127.0.0.1:{port}", "--wsgi-file", str(app),
            "--cache2", "name=c,items=20,blocksize=200", "--mules", "1"]
    with instance(args, port, tmp_path / "decorated.log") as inst:
        def g(path):
            return uwsgi_http_get(port, path, PY)
        assert g("/call") == (200, b"abab")
        assert g("/locked") == (200, b"True")
        assert _wait_for(lambda: g("/mule") == (200, b"ok") and g("/get?mulefunc") == (200, b"hello from mule 1"),
                         timeout=10), inst.log()
        assert g("/sig")[0] == 200
        assert _wait_for(lambda: g("/num?sig40_w1")[1] == b"1" and g("/num?sig40_w2")[1] == b"1"), inst.log()
        assert _wait_for(lambda: int(g("/num?ticks")[1].replace(b"None", b"0")) >= 2)


def test_timers_without_master(tmp_path):
    """No --master, one process: it owns the timers and is worker 1 (both apps loaded)."""
    port = free_port()
    args = ["--socket", f"127.0.0.1:{port}", "--lua", "examples/services_app.lua",
            "--wsgi-file", "examples/services_app.py", "--cache2", "name=shared,items=50,blocksize=256"]
    with instance(args, port, tmp_path / "single.log") as inst:
        assert _wait_for(lambda: uwsgi_http_get(port, "/get?k=py_timer", PY) == (200, b"1:21")), inst.log()
        n = int(uwsgi_http_get(port, "/num?k=py_timer_count", PY)[1])
        assert _wait_for(lambda: int(uwsgi_http_get(port, "/num?k=py_timer_count", PY)[1]) > n)
        assert uwsgi_http_get(port, "/call?f=lua_concat&a=a&a=b", PY) == (200, b"a+b")
        assert inst.log().count("target worker2 does not exist") == 1   # said once, not every second
