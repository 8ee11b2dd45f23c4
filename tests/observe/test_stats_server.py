"""The stats server: uWSGI's JSON shape (what uwsgitop reads), --stats-http, --stats-minified,
unix-socket stats, live values (busy core, requests, harakiri_count); plus in-process unit tests
of the scoreboard and the document builder."""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time

import pytest
from helpers import free_port

from tests.master_helpers import MODIFIER1, get, launch, read_stats

M1 = ["--http-socket-modifier1", MODIFIER1]

TOP = {"version", "listen_queue", "listen_queue_errors", "signal_queue", "load", "pid", "uid", "gid", "cwd",
       "locks", "sockets", "workers"}
WORKER = {"id", "pid", "accepting", "requests", "delta_requests", "exceptions", "harakiri_count", "signals",
          "signal_queue", "status", "rss", "vsz", "running_time", "last_spawn", "respawn_count", "tx", "avg_rt",
          "apps", "cores"}
CORE = {"id", "requests", "static_requests", "routed_requests", "offloaded_requests", "write_errors",
        "read_errors", "in_request", "vars", "req_info"}
SOCKET = {"name", "proto", "queue", "max_queue", "shared", "can_offload"}


def _server(tmp_path, *extra, stats=None):
    port = free_port()
    stats = stats if stats is not None else free_port()
    srv = launch(["--master", "-p", "2", "--http-socket", f"127.0.0.1:{port}", *M1,
                    "--stats", stats if isinstance(stats, str) else f"127.0.0.1:{stats}", *extra],
                   tmp_path / "log")
    srv.wait_port(port)
    srv.wait_log("stats server enabled")
    srv.wait_log("spawned uWSGI worker 2")
    return srv, port, stats


def _wait_accepting(stats_addr, n=2, timeout=10.0):
    """Until n workers accept and none is busy: a worker ends its request's bookkeeping after
    the response reached the client, so a loaded machine can show it busy for a moment."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = json.loads(read_stats(stats_addr))
        if sum(w["accepting"] for w in d["workers"]) >= n and not any(w["status"] == "busy" for w in d["workers"]):
            return d
        time.sleep(0.1)
    return d


def test_stats_json_has_uwsgi_shape_and_live_counters(tmp_path):
    srv, port, stats = _server(tmp_path)
    with srv:
        for _ in range(5):
            assert get(port)[0] == 200
        d = _wait_accepting(stats)
        assert TOP <= set(d)
        assert d["pid"] == srv.pid
        assert d["uid"] == os.getuid() and d["gid"] == os.getgid()
        assert isinstance(d["version"], str) and d["version"]
        assert len(d["sockets"]) == 1 and SOCKET <= set(d["sockets"][0])
        assert d["sockets"][0]["proto"] == "http"
        assert [w["id"] for w in d["workers"]] == [1, 2]
        for w in d["workers"]:
            assert WORKER <= set(w), WORKER - set(w)
            assert w["pid"] > 0 and w["status"] == "idle" and w["accepting"] == 1
            assert w["rss"] > 0 and w["vsz"] >= w["rss"]
            assert w["last_spawn"] > 0 and w["respawn_count"] == 0
            assert len(w["cores"]) == 1 and CORE <= set(w["cores"][0])
        assert sum(w["requests"] for w in d["workers"]) == 5
        assert sum(w["tx"] for w in d["workers"]) > 5 * len(b"hello")
        assert all(w["avg_rt"] >= 0 for w in d["workers"])
        # pretty-printed by default (uWSGI style), one document per connection
        assert b"\n" in read_stats(stats)


def test_stats_show_a_busy_core_with_its_request(tmp_path):
    srv, port, stats = _server(tmp_path)
    with srv:
        _wait_accepting(stats)
        t = threading.Thread(target=lambda: get(port, "/sleep?1.5", timeout=20))
        t.start()
        try:
            deadline = time.monotonic() + 15
            busy = []
            while time.monotonic() < deadline and not busy:
                d = json.loads(read_stats(stats))
                busy = [w for w in d["workers"] if w["status"] == "busy"]
                time.sleep(0.05)
            assert len(busy) == 1
            core = busy[0]["cores"][0]
            assert core["in_request"] == 1
            assert core["req_info"]["uri"] == "/sleep?1.5"
        finally:
            t.join(20)


def test_stats_http_and_minified(tmp_path):
    srv, port, stats = _server(tmp_path, "--stats-http", "--stats-minified")
    with srv:
        conn = http.client.HTTPConnection("127.0.0.1", stats, timeout=10)
        conn.request("GET", "/")
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        assert resp.status == 200
        assert resp.getheader("Content-Type") == "application/json"
        assert int(resp.getheader("Content-Length")) == len(body)
        assert b"\n" not in body
        assert TOP <= set(json.loads(body))


def test_stats_on_a_unix_socket_is_removed_at_exit(tmp_path):
    path = tmp_path / "stats.sock"
    srv, port, _ = _server(tmp_path, stats=str(path))
    with srv:
        d = json.loads(read_stats(path))
        assert TOP <= set(d)
        srv.stop(signal.SIGTERM)
    assert not path.exists()


def test_stats_count_respawns_and_harakiri(tmp_path):
    srv, port, stats = _server(tmp_path, "--harakiri", "1")
    with srv:
        with pytest.raises(Exception):
            get(port, "/sleep?20", timeout=15)
        srv.wait_log("Respawned uWSGI worker")
        d = json.loads(read_stats(stats))
        assert sum(w["harakiri_count"] for w in d["workers"]) == 1
        assert sum(w["respawn_count"] for w in d["workers"]) == 1


def test_stats_bind_error_exits_1(tmp_path):
    import socket
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        port = free_port()
        srv = launch(["--master", "--http-socket", f"127.0.0.1:{port}", *M1, "--stats",
                        f"127.0.0.1:{busy.getsockname()[1]}"], tmp_path / "log")
        with srv:
            assert srv.proc.wait(20) == 1
            assert "cannot bind the stats server" in srv.log()
    finally:
        busy.close()


# ---- in-process unit tests ----------------------------------------------------------------

def test_scoreboard_counts_per_core_and_sums_per_worker():
    from uwsgid.observe.scoreboard import Scoreboard
    sb = Scoreboard(2, 3)
    sb.spawned(1, 111, False)
    sb.set_accepting(1, True)
    sb.begin(1, 2, b"/x" * 300)                  # over URI_MAX: truncated, no overflow
    assert sb.busy_cores(1)[0][0] == 2
    assert len(sb.busy_cores(1)[0][2]) == 256
    sb.end(1, 2, 200, 100, 1500, False)
    sb.begin(1, 0, b"/y")
    sb.end(1, 0, 500, 50, 500, True)
    w = sb.worker(1)
    assert (w["requests"], w["tx"], w["exceptions"], w["running_time"]) == (2, 150, 1, 2000)
    assert w["accepting"] == 1 and not w["busy"] and w["pid"] == 111
    assert sb.worker(2)["requests"] == 0
    sb.died(1)
    assert sb.worker(1)["pid"] == 0 and sb.worker(1)["accepting"] == 0
    sb.spawned(1, 222, True)
    w = sb.worker(1)
    assert (w["respawn_count"], w["delta_requests"], w["requests"], w["pid"]) == (1, 0, 2, 222)
    sb.begin(1, 1, b"/again")
    sb.end(1, 1, 200, 1, 1, False)
    assert sb.worker(1)["delta_requests"] == 1
    # out-of-range ids are ignored, never written into a neighbour's slot
    sb.begin(3, 0, b"/z")
    sb.begin(1, 7, b"/z")
    sb.end(0, 0, 200, 1, 1, False)
    assert sb.busy_cores(1) == [] and sb.busy_cores(2) == []


def test_scoreboard_is_shared_with_forked_children():
    from uwsgid.observe.scoreboard import Scoreboard
    sb = Scoreboard(1, 1)
    pid = os.fork()
    if pid == 0:
        sb.begin(1, 0, b"/child")
        sb.end(1, 0, 200, 42, 10, False)
        os._exit(0)
    os.waitpid(pid, 0)
    assert sb.worker(1)["tx"] == 42


class _Opts:
    stats_http = False
    stats_minified = False


class _FakeServer:
    def __init__(self):
        from uwsgid.observe.scoreboard import Scoreboard
        self.version = "test"
        self.master_pid = os.getpid()
        self.listeners = []
        self.plugins = {}
        self.scoreboard = Scoreboard(2, 2)
        self.opts = _Opts()


def test_stats_builder_and_hook():
    from uwsgid.observe import stats
    from uwsgid.util import hooks
    srv = _FakeServer()
    srv.scoreboard.spawned(1, os.getpid(), False)
    srv.scoreboard.begin(1, 1, b"/busy")
    hooks.register("stats", lambda d: d.__setitem__("metrics", {"x": {"type": "counter", "value": 1}}))
    try:
        d = stats.build(srv)
    finally:
        hooks._hooks["stats"].pop()
    assert TOP <= set(d)
    assert d["metrics"]["x"]["value"] == 1
    w1, w2 = d["workers"]
    assert w1["status"] == "busy" and w1["rss"] > 0
    assert w1["cores"][1]["in_request"] == 1 and w1["cores"][1]["req_info"]["uri"] == "/busy"
    assert w2["status"] == "cheap" and w2["pid"] == 0     # not spawned
    text = stats.render(srv, minified=True)
    assert b"\n" not in text and TOP <= set(json.loads(text))


def test_scoreboard_total_requests_counts_every_worker():
    from uwsgid.observe.scoreboard import Scoreboard
    sb = Scoreboard(2, 2)
    sb.end(1, 0, 200, 1, 1, False)
    sb.end(2, 1, 200, 1, 1, False)
    sb.end(2, 1, 200, 1, 1, False)
    assert sb.total_requests() == 3
    assert sb.worker(1)["requests"] == 1 and sb.worker(2)["requests"] == 2


def test_listen_queue_reads_the_kernel_accept_queue():
    import socket

    from uwsgid.observe.stats import listen_queue
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(77)
    clients = [socket.create_connection(s.getsockname()) for _ in range(3)]
    try:
        assert listen_queue(s) == (3, 77)
    finally:
        for c in clients:
            c.close()
        s.close()
