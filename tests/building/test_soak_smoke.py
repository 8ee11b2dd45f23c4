"""The reliability run never rots: `bench/soak.py --quick --only ours` runs its whole timeline (load,
SIGHUP, slowloris with the probe, SIGKILL of a worker, fuzzer) against ./uwsgi in about 25 s and
prints its table; plus its pieces on fixed input. Nothing is timed or asserted about the figures
(the soak reports its targets, it does not enforce them), and real uWSGI is not needed: `make soak`
installs it and runs both sides.
"""

import json
import random
import socket
import subprocess
import sys
import threading

import pytest
from helpers import ROOT

sys.path.insert(0, str(ROOT / "bench"))

from harness import fuzz, servers  # noqa: E402
from harness.soakclients import Client, Kind, Reader  # noqa: E402

ROWS = ["requests sent", "answered right", "on the killed worker", "lost otherwise (target 0)",
        "SIGHUP: workers replaced in", "SIGKILL: worker respawned in", "probe --http-socket ans. / p99",
        "probe --socket ans. / p99", "fuzz inputs http / uwsgi", "RSS MB, master+workers start / end",
        "open fds master / workers end", "RSS flat (+10%)", "fds flat (+3 per process)"]


@pytest.mark.skipif(servers.ours_available() is not None, reason=str(servers.ours_available()))
def test_quick_soak_runs_the_timeline_and_prints_the_table(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), "--quick", "--only", "ours",
                        "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    for row in ROWS:
        assert row in r.stdout, (row, out)
    assert "this server (./uwsgi)" in r.stdout and "uWSGI 2.0.21" not in r.stdout
    doc = json.loads((tmp_path / "soak-latest.json").read_text())
    assert doc["mode"] == "quick" and doc["finished"] and doc["table"] in r.stdout
    side = doc["sides"]["ours"]
    assert side["error"] is None, side.get("traceback") or side["error"]
    assert all(v == "ok" for v in side["preflight"].values()), side["preflight"]
    req = side["requests"]
    assert req["sent"] > 1000 and req["ok"] + req["failed"] == req["sent"]
    assert req["failed_on_killed_worker"] + req["failed_other"] == req["failed"]
    assert {s["name"] for s in side["streams"]} == set(req["by_stream"])
    # the timeline happened: a reload, a kill (its worker came back), the attack and its probe
    assert side["reload"]["replaced_after_s"] is not None, side["reload"]
    assert side["kill"]["pid"] and side["kill"]["replaced_after_s"] is not None, side["kill"]
    assert side["kill"]["new_pids"][str(side["kill"]["worker_id"])] != side["kill"]["pid"]
    assert side["slowloris"]["open"] == 300
    assert side["slowloris"]["probe_http"]["requests"] > 0 and side["slowloris"]["probe_uwsgi"]["requests"] > 0
    assert sum(side["fuzz"]["sent"].values()) > 50
    fp = side["footprint"]
    assert set(fp["start"]) == set(fp["end"]) == {"master", "worker 1", "worker 2"}
    assert all(v["rss_kb"] and v["fds"] for v in fp["end"].values())
    assert set(side["verdicts"]) == {"lost_outside_killed_worker", "rss_flat", "fds_flat", "slowloris_probe"}


def test_usage_error():
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), "--only", "gunicorn"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "gunicorn" in r.stderr


def test_fuzz_inputs_repeat_with_the_seed():
    a, b = random.Random("s"), random.Random("s")
    assert [fuzz.http_input(a) for _ in range(200)] == [fuzz.http_input(b) for _ in range(200)]
    assert [fuzz.uwsgi_input(a) for _ in range(200)] == [fuzz.uwsgi_input(b) for _ in range(200)]
    assert fuzz.answer_of(b"HTTP/1.1 400 Bad Request\r\n") == "4xx"
    assert fuzz.answer_of(b"garbage") == "other bytes"


def _one_shot_server(reply: bytes):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def serve():
        c, _ = srv.accept()
        c.recv(65536)
        c.sendall(reply)
        c.close()
        srv.close()
    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1]


@pytest.mark.parametrize("reply,ok,why", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nHello World", True, ""),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nHello\r\n6\r\n World\r\n0\r\n\r\n", True, ""),
    (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\nHello World", True, ""),      # framed by close
    (b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n", False, "status"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nHello Worms", False, "body"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nHello", False, "closed"),
    (b"", False, "closed"),
])
def test_a_request_outcome_says_why_it_failed(reply, ok, why):
    port = _one_shot_server(reply)
    o = Client(Kind("t", "http"), "127.0.0.1", port, 5).request("/x")
    assert (o.ok, o.why) == (ok, why), o
    assert o.port and o.t1 >= o.t0


def test_reader_keeps_pipelined_bytes():
    a, b = socket.socketpair()
    a.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 204 No Content\r\n\r\n")
    a.close()
    r = Reader(b)
    assert r.response()[::2] == (200, b"hi")
    assert r.response()[0] == 204
    b.close()
