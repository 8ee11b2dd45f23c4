"""--gevent N (uWSGI's gevent loop engine): each Python request in a greenlet on gevent's hub, so
apps blocking on gevent-patched calls (time.sleep, sockets, `requests`) run concurrently; the
companions (--gevent-monkey-patch, --gevent-early-monkey-patch, --gevent-wait-for-hub), harakiri,
a graceful reload under load, a Lua app in the same instance, and bad values. Real processes."""

from __future__ import annotations

import signal
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import ROOT, Server, free_port, http_get, run_uwsgi

pytest.importorskip("gevent")

APP = textwrap.dedent('''
    import contextvars, os, time
    import uwsgi

    SEEN = contextvars.ContextVar("seen")

    def application(env, start_response):
        path = env["PATH_INFO"]
        if path == "/ctx":          # a request starts with empty contextvars, as in a new greenlet
            import gevent
            seen = SEEN.get("unset")
            SEEN.set("set by an earlier request")
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"%s greenlet=%d" % (seen.encode(), id(gevent.getcurrent()))]
        elif path == "/armed":      # a gevent.Timeout left armed: it fires once the core is idle
            import gevent
            gevent.Timeout(0.05).start()
        elif path == "/raise":
            raise RuntimeError("boom")
        elif path == "/tsleep":     # time.sleep: cooperative only once monkey-patched
            time.sleep(0.2)
        elif path == "/gsleep":
            import gevent
            gevent.sleep(0.2)
        elif path == "/usleep":     # uwsgi.async_sleep waits on the hub inside the call
            uwsgi.async_sleep(0.2)
        elif path == "/fetch":      # `requests` to a local server, through gevent's patched socket
            import requests
            port = env["QUERY_STRING"]
            body = requests.get("http://127.0.0.1:%s/slow" % port, timeout=10).text
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [body.encode()]
        elif path == "/stuck":      # never gives the hub back: only harakiri ends it
            while True:
                pass
        elif path == "/stream":
            def body():
                for i in range(3):
                    time.sleep(0.05)
                    yield b"chunk%d " % i
            start_response("200 OK", [("Content-Type", "text/plain")])
            return body()
        elif path == "/patched":
            import socket
            from gevent import monkey
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"socket=%d time=%d" % (monkey.is_module_patched("socket"), monkey.is_module_patched("time"))]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"pid=%d core=%d" % (os.getpid(), uwsgi.async_id())]
''')

SLOW_BACKEND = textwrap.dedent('''
    import time
    def application(env, start_response):
        time.sleep(0.2)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"backend"]
''')


@pytest.fixture
def app(tmp_path):
    p = tmp_path / "gapp.py"
    p.write_text(APP)
    return p


def _serve(app, *extra, processes=1):
    port = free_port()
    args = ["--master", "--processes", processes, "--http-socket", f"127.0.0.1:{port}",
            "--wsgi-file", app, *extra]
    return Server(args, port), port


def _concurrent(port, path, n=8):
    """n requests at once: (seconds for all, [bodies])."""
    t0 = time.monotonic()
    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(lambda _: http_get(port, path, timeout=20), range(n)))
    elapsed = time.monotonic() - t0
    assert all(r[0] == 200 for r in results), results
    return elapsed, [r[2] for r in results]


def test_monkey_patched_sleeps_run_concurrently(app):
    srv, port = _serve(app, "--gevent", 8, "--gevent-monkey-patch")
    with srv:
        assert http_get(port, "/patched")[2] == b"socket=1 time=1"
        for path in ("/tsleep", "/gsleep", "/usleep"):
            elapsed, bodies = _concurrent(port, path)
            # one worker: serially 8 x 0.2 = 1.6 s
            assert elapsed < 1.0, (path, elapsed)
        log = srv.log()
    assert "enabled gevent engine (8 async cores" in log
    assert "cores: 8" in log


def test_without_monkey_patch_time_sleep_blocks(app):
    """The contrast that shows the test above can fail: unpatched time.sleep holds the worker."""
    srv, port = _serve(app, "--gevent", 4)
    with srv:
        assert http_get(port, "/patched")[2] == b"socket=0 time=0"
        elapsed, _ = _concurrent(port, "/tsleep", 4)
        assert elapsed >= 0.7, elapsed
        elapsed, _ = _concurrent(port, "/gsleep", 4)   # gevent.sleep itself is cooperative
        assert elapsed < 0.7, elapsed


def test_requests_to_a_local_server_concurrently(app, tmp_path):
    pytest.importorskip("requests")
    backend = tmp_path / "backend.py"
    backend.write_text(SLOW_BACKEND)
    bport = free_port()
    with Server(["--http-socket", f"127.0.0.1:{bport}", "--wsgi-file", backend, "--gevent", 16,
                 "--gevent-monkey-patch"], bport):
        srv, port = _serve(app, "--gevent", 8, "--gevent-early-monkey-patch")
        with srv:
            assert http_get(port, f"/fetch?{bport}")[2] == b"backend"   # imports requests: not timed
            elapsed, bodies = _concurrent(port, f"/fetch?{bport}")
            assert bodies == [b"backend"] * 8
            assert elapsed < 1.0, elapsed


def test_a_core_runs_its_requests_in_one_greenlet_each_starting_afresh(app):
    """The core's greenlet is kept between requests (no new frame stack per request): it starts
    each with empty contextvars, and survives an app error and a stray gevent.Timeout."""
    srv, port = _serve(app, "--gevent", 1, "--gevent-monkey-patch")
    with srv:
        first = http_get(port, "/ctx")[2]
        assert first.startswith(b"unset greenlet="), first
        assert http_get(port, "/ctx")[2] == first
        assert http_get(port, "/armed")[0] == 200
        srv.wait_log("a stray Timeout reached an idle gevent core: ignored")
        assert http_get(port, "/ctx")[2] == first
        assert http_get(port, "/raise")[0] == 500
        assert http_get(port, "/ctx")[2] == first
        elapsed, bodies = _concurrent(port, "/gsleep", 3)     # one core: one request at a time
        assert elapsed >= 0.55, elapsed
    assert "Traceback" in srv.log()     # the /raise one, logged


def test_streamed_body_and_request_log(app):
    srv, port = _serve(app, "--gevent", 4, "--gevent-monkey-patch")
    with srv:
        status, _, body = http_get(port, "/stream")
        assert (status, body) == (200, b"chunk0 chunk1 chunk2 ")
        srv.wait_log("GET /stream => generated 21 bytes")


def test_harakiri_kills_a_stuck_worker_and_the_master_respawns_it(app):
    srv, port = _serve(app, "--gevent", 4, "--harakiri", 2)
    with srv:
        pid_before = http_get(port, "/")[2].split()[0]
        with pytest.raises(Exception):
            http_get(port, "/stuck", timeout=10)
        srv.wait_log("HARAKIRI", timeout=15)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                status, _, body = http_get(port, "/", timeout=5)
            except OSError:
                time.sleep(0.2)
                continue
            if status == 200 and body.split()[0] != pid_before:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"no respawned worker answered:\n{srv.log()}")


def test_sighup_under_load_loses_nothing(app):
    srv, port = _serve(app, "--gevent", 16, "--gevent-monkey-patch", processes=2)
    failures, done = [], []
    stop = threading.Event()

    def client():
        while not stop.is_set():
            try:
                status, _, _ = http_get(port, "/gsleep", timeout=20)
                (done if status == 200 else failures).append(status)
            except OSError as e:
                failures.append(repr(e))

    with srv:
        threads = [threading.Thread(target=client) for _ in range(12)]
        for t in threads:
            t.start()
        time.sleep(0.8)
        srv.signal(signal.SIGHUP)
        srv.wait_log("goodbye to the gevent Hub", count=2, timeout=20)
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join(30)
        n = len(done)
        srv.wait_log("cores: 16", count=4, timeout=20)   # respawned after the reload
    assert not failures, failures[:5]
    assert n > 30, n


def test_lua_app_in_the_same_instance(app, tmp_path):
    lua = ROOT / "examples" / "pippo.lua"
    if not lua.exists():
        pytest.skip("examples/pippo.lua missing")
    port = free_port()
    args = ["--master", "--processes", 1, "--http-socket", f"127.0.0.1:{port}", "--gevent", 4,
            "--gevent-monkey-patch", "--wsgi-file", app, "--lua", lua, "--http-socket-modifier1", 0]
    with Server(args, port):
        assert b"pid=" in http_get(port, "/")[2]
    sleep_lua = ROOT / "bench" / "apps" / "sleep.lua"
    port = free_port()
    args = ["--master", "--processes", 1, "--http-socket", f"127.0.0.1:{port}", "--http-socket-modifier1", 6,
            "--gevent", 8, "--lua", sleep_lua]
    with Server(args, port):
        status, _, body = http_get(port, "/")
        assert status == 200 and body
        t0 = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            res = list(pool.map(lambda _: http_get(port, "/", timeout=20)[0], range(8)))
        assert res == [200] * 8
        assert time.monotonic() - t0 < 5


def test_wait_for_hub_lets_the_apps_greenlets_finish(tmp_path):
    p = tmp_path / "bg.py"
    marker = tmp_path / "marker"
    p.write_text(textwrap.dedent(f'''
        import gevent
        def later():
            gevent.sleep(1.0)
            open({str(marker)!r}, "w").write("done")
        def application(env, start_response):
            gevent.spawn(later)
            start_response("200 OK", [])
            return [b"ok"]
    '''))
    for wait_for_hub, expected in ((False, False), (True, True)):
        if marker.exists():
            marker.unlink()
        extra = ["--gevent-wait-for-hub"] if wait_for_hub else []
        srv, port = _serve(p, "--gevent", 4, *extra)
        with srv:
            assert http_get(port, "/")[2] == b"ok"
            srv.stop(signal.SIGTERM, timeout=20)
        assert marker.exists() is expected, srv.log()


@pytest.mark.parametrize("args,line", [
    (["--gevent", "0"], "--gevent 0: the number of async cores must be 1 or more"),
    (["--gevent", "-2"], "--gevent -2: the number of async cores must be 1 or more"),
    (["--gevent", "4", "--threads", "2"], "--gevent with --threads 2"),
    (["--gevent", "4", "--greenlet"], "--gevent with --greenlet: pick one"),
    (["--gevent-monkey-patch"], "--gevent-monkey-patch: needs the gevent loop engine (--gevent N)"),
    (["--gevent-wait-for-hub"], "--gevent-wait-for-hub: needs the gevent loop engine (--gevent N)"),
    (["--gevent", "many"], "gevent"),
])
def test_bad_values_one_line(app, args, line):
    r = run_uwsgi(["--http-socket", f"127.0.0.1:{free_port()}", "--wsgi-file", app, *args], timeout=30)
    assert r.returncode == 1, r.stdout + r.stderr
    out = (r.stdout + r.stderr).strip().splitlines()
    hits = [x for x in out if line in x]
    assert len(hits) == 1, out
    assert "Traceback" not in r.stdout + r.stderr
