"""Graceful reload (SIGHUP) under concurrent load: no refused or failed request, the master keeps
its pid, and the apps are really reloaded (binary re-exec) — or only the workers (--lazy-apps)."""

from __future__ import annotations

import signal
import threading
import time

from helpers import free_port, wait_port

from tests.master_helpers import IN_FLIGHT, MODIFIER1, get, info, launch

M1 = ["--http-socket-modifier1", MODIFIER1]


class Load:
    """Clients hammering the server (a new connection per request) until stopped."""

    def __init__(self, port: int, clients: int = 6, path: str = "/"):
        self.port = port
        self.path = path
        self.ok = 0
        self.failures: list[str] = []
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self):
        while not self.stop_flag.is_set():
            try:
                status, body = get(self.port, self.path, timeout=30)
                if status != 200:
                    raise AssertionError(f"status {status}: {body[:100]!r}")
                with self.lock:
                    self.ok += 1
            except Exception as e:  # noqa: BLE001 - every failure is recorded
                with self.lock:
                    self.failures.append(repr(e))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        for t in self.threads:
            t.join(40)


def _reload_under_load(tmp_path, extra, reloads=2):
    port = free_port()
    srv = launch(["--master", "-p", "2", "--http-socket", f"127.0.0.1:{port}", *M1, *extra],
                   tmp_path / "log")
    with srv:
        srv.wait_port(port)
        before = info(port)
        with Load(port) as load:
            time.sleep(0.5)
            for i in range(reloads):
                done = srv.log().count("spawned uWSGI worker 2")
                srv.signal(signal.SIGHUP)
                srv.wait_log("spawned uWSGI worker 2", count=done + 1, timeout=30)
                time.sleep(0.7)
        assert load.failures == [], load.failures[:5]
        assert load.ok > 20
        wait_port(port)
        after = info(port)
        assert srv.proc.poll() is None
        assert after["master"] == str(srv.pid)
        return before, after, srv.log()


def test_sighup_reload_under_load_has_no_failed_request_and_reloads_apps(tmp_path):
    before, after, log = _reload_under_load(tmp_path, [])
    assert "...gracefully killing workers..." in log
    assert "binary reloading uWSGI..." in log
    assert before["loaded"] != after["loaded"]        # app code really reloaded (master re-exec)
    assert before["pid"] != after["pid"]


def test_lazy_apps_reload_only_replaces_workers(tmp_path):
    before, after, log = _reload_under_load(tmp_path, ["--lazy-apps"])
    assert "binary reloading uWSGI..." not in log
    assert before["loaded"] == after["loaded"]        # master not re-exec'd
    assert before["pid"] != after["pid"]


def test_in_flight_request_survives_reload(tmp_path):
    port = free_port()
    srv = launch(["--master", "-p", "1", "--http-socket", f"127.0.0.1:{port}", *M1], tmp_path / "log")
    with srv:
        srv.wait_port(port)
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("r", get(port, "/sleep?1.5", timeout=30)))
        t.start()
        srv.wait_log(IN_FLIGHT)
        srv.signal(signal.SIGHUP)
        t.join(30)
        assert result.get("r") == (200, b"slept 1.5")
        srv.wait_log("binary reloading uWSGI...")
        assert get(port) == (200, b"hello")


def test_connection_opened_before_a_reload_is_served_after_it(tmp_path):
    # Deferred accept (the default): the kernel holds a connection until its request arrives, on
    # the listening socket the master keeps across the reload; the new workers serve it.
    from helpers import connect, read_response
    port = free_port()
    srv = launch(["--master", "-p", "1", "--http-socket", f"127.0.0.1:{port}", *M1], tmp_path / "log")
    with srv:
        srv.wait_port(port)
        s = connect(f"127.0.0.1:{port}")
        done = srv.log().count("spawned uWSGI worker 1")
        srv.signal(signal.SIGHUP)
        srv.wait_log("spawned uWSGI worker 1", count=done + 1, timeout=30)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, _, body = read_response(s.makefile("rb"))
        s.close()
        assert (status, body) == (200, b"hello")


def test_exit_on_reload_stops(tmp_path):
    port = free_port()
    srv = launch(["--master", "--exit-on-reload", "--http-socket", f"127.0.0.1:{port}", *M1], tmp_path / "log")
    with srv:
        srv.wait_port(port)
        srv.signal(signal.SIGHUP)
        assert srv.proc.wait(20) == 0
        assert "goodbye to uWSGI." in srv.log()


def test_reload_under_load_through_the_http_router(tmp_path):
    port = free_port()
    srv = launch(["--master", "-p", "2", "--http", f"127.0.0.1:{port}", "--http-modifier1", MODIFIER1],
                   tmp_path / "log")
    with srv:
        srv.wait_port(port)
        srv.wait_log("spawned uWSGI http 1")
        before = info(port)
        with Load(port) as load:
            time.sleep(0.5)
            for _ in range(2):
                done = srv.log().count("spawned uWSGI http 1")
                srv.signal(signal.SIGHUP)
                srv.wait_log("spawned uWSGI http 1", count=done + 1, timeout=30)
                time.sleep(0.7)
        assert load.failures == [], load.failures[:5]
        assert load.ok > 20
        assert info(port)["loaded"] != before["loaded"]


def test_reload_when_the_binary_cannot_be_reexecuted_respawns_workers(tmp_path):
    port = free_port()
    srv = launch(["--master", "-p", "1", "--http-socket", f"127.0.0.1:{port}", *M1], tmp_path / "log",
                   env={"MASTERTEST_NO_REEXEC": "1"})
    with srv:
        srv.wait_port(port)
        before = info(port)
        srv.signal(signal.SIGHUP)
        srv.wait_log("reloading the workers only")
        srv.wait_log("Respawned uWSGI worker 1")
        after = info(port)
        assert after["pid"] != before["pid"] and after["master"] == before["master"]
        assert srv.proc.poll() is None
