"""The benchmark harness never rots: `bench/run.py --quick` on two cheap scenarios, plus its verdict
and report logic on fixed figures. No timing is asserted: the verdicts may be PASS or MISS.

Peers: real uWSGI (Debian's uwsgi-core + lua51 plugin) and gunicorn are installed by `make bench`,
not by `make test`; a scenario whose peer is missing is reported SKIP by the harness, and this test
then checks the structure only (and says so with a pytest skip when nothing could be measured).
"""

import json
import socket
import subprocess
import sys
import time

import pytest
from helpers import ROOT

sys.path.insert(0, str(ROOT / "bench"))

from harness import load, report  # noqa: E402
from harness.scenarios import BY_ID  # noqa: E402

CHEAP = ["lua-close", "wsgi-gunicorn"]


def test_quick_run_produces_table_json_and_chart(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--duration", "1",
                        "--only", *CHEAP, "--out", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=150)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "targets met:" in r.stdout, out
    doc = json.loads((tmp_path / "latest.json").read_text())
    assert doc["mode"] == "quick" and doc["machine"]["cores"] >= 1 and doc["finished"]
    assert [s["id"] for s in doc["scenarios"]] == CHEAP
    for s in doc["scenarios"]:
        assert s["status"] in {"pass", "miss", "skip", "error"}, s
        assert s["target"] == BY_ID[s["id"]].target
        assert s["id"] in r.stdout
        if s["status"] in ("pass", "miss"):
            assert s["ratio"] > 0 and s["ours"]["median"] > 0 and s["peer"]["median"] > 0
            assert ("MISS" in r.stdout) == any(x["status"] == "miss" for x in doc["scenarios"])
        # A peer that is installed must be measured: a failure there is the harness's own bug.
        if not (s["peer"]["error"] or "").startswith("missing:"):
            assert s["peer"]["median"] and s["peer"]["median"] > 0, s["peer"]
            assert s["peer"]["command"]
    try:
        import matplotlib  # noqa: F401  (the bench extra; `make test` installs only the base)
        assert (tmp_path / "ratios.png").stat().st_size > 1000
    except ImportError:
        assert "matplotlib is not installed" in r.stdout
    if all(s["status"] == "skip" for s in doc["scenarios"]):
        pytest.skip("harness ran, nothing measurable here: " + "; ".join(s["reason"] for s in doc["scenarios"]))


def test_usage_error_names_the_bad_scenario(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--only", "nope", "--out", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "unknown scenario nope" in r.stderr


def _res(id_, status, ratio, op=">=", target=1.3, metric="rps"):
    return {"id": id_, "peer_name": "uWSGI", "unit": "req/s", "metric": metric, "status": status,
            "ratio": ratio, "target_op": op, "target": target, "reason": "",
            "ours": {"median": None if ratio is None else 100.0 * ratio}, "peer": {"median": 100.0}}


def test_report_marks_misses_plainly_and_draws_chart(tmp_path):
    pytest.importorskip("matplotlib")
    results = [_res("a", "pass", 2.0), _res("b", "miss", 0.5), _res("c", "miss", 1.7, "<=", 1.5, "rss_mb"),
               _res("d", "skip", None)]
    results[3]["reason"] = "missing: ./uwsgi"
    curve = {"title": "curve", "points": [
        {"series": "workers", "workers": 1, "async": 1, "ideal": 20, "rps": 19.5, "p50_ms": 51.0},
        {"series": "async", "workers": 1, "async": 8, "ideal": 160, "rps": 150.0, "p50_ms": 52.0}]}
    text = report.table(results, curve)
    assert "MISS <<<" in text and "PASS" in text and "SKIP" in text
    assert "MISSED: b, c" in text and "targets met: 1 of 3 measured" in text
    info = _res("e", "info", 0.9, "<=", None, "p99_ms")
    assert "INFO" in report.table([info], None)
    assert report.chart(tmp_path / "i.png", [info], None, "test") is None
    assert "missing: ./uwsgi" in text
    assert report.chart(tmp_path / "r.png", results, curve, "test") is None
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_wrk_problem_ignores_close_framing_but_not_errors():
    ok = {"requests": 1000, "duration_us": 2_000_000, "errors": {"connect": 0, "read": 1000, "write": 0, "status": 0, "timeout": 0}}
    assert load.wrk_problem(ok) is None   # uWSGI's --http-socket frames by closing: a "read error" each
    bad = {"requests": 1000, "duration_us": 2_000_000, "errors": {"connect": 0, "read": 0, "write": 0, "status": 500, "timeout": 0}}
    assert "non-2xx" in load.wrk_problem(bad)
    assert load.wrk_problem({**ok, "requests": 0}) == "no request completed"
    assert "stalled" in load.wrk_problem({**ok, "duration_us": 9_000_000}, 2)
    assert load.wrk_problem({**ok, "duration_us": 2_300_000}, 2) is None


def _tiny_server(keepalive: bool):
    import http.server
    import threading

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1" if keepalive else "HTTP/1.0"

        def do_GET(self):
            body = b"hello"
            self.send_response(200)
            if keepalive:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.mark.parametrize("keepalive", [True, False])
def test_paced_client_keeps_the_offered_rate(keepalive):
    from harness import paced
    srv = _tiny_server(keepalive)
    try:
        r = paced.run("127.0.0.1", srv.server_address[1], "/", 200, 1.5)
    finally:
        srv.shutdown()
        srv.server_close()
    assert sum(r["errors"].values()) == 0, r
    assert 240 <= r["requests"] <= 360          # Poisson around 300, seeded
    assert 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p99"] <= r["latency_ms"]["max"]
    if keepalive:
        assert r["new_connections"] < r["requests"] / 2   # idle kept-alive connections are reused
    else:
        assert r["new_connections"] == r["requests"]
    assert load.paced_problem(r) is None


def _front_note(peer_runs, ceiling_runs, peer_share=None):
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    res = _res("nginx-wsgi", "miss", 0.9, target=1.2)
    res["peer"]["runs"] = [{"value": v} for v in peer_runs]
    res["ceiling"] = {"runs": [{"value": v} for v in ceiling_runs]}
    if peer_share is not None:
        res["front_cpu_share"] = {"ours": 0.8, "peer": peer_share}
    return run.Bench._front_note(BY_ID["nginx-wsgi"], res), res


def test_a_miss_behind_nginx_says_what_bounds_it():
    # a bench run of this machine: the peer's first run fell in a slow phase. Paired by round the
    # no-work upstream is 1.05x the peer (the medians alone would say 1.38x): beyond nginx itself
    note, res = _front_note([33127, 60051, 43012], [59241, 63001, 43448], peer_share=0.97)
    assert "97% of a core" in note and "only 1.05x the peer" in note and "beyond nginx's ceiling" in note
    assert res["ceiling_ratio"] == pytest.approx(1.05, abs=0.005)
    # well above the target: the gap is ours
    note, _ = _front_note([100, 100, 100], [150, 140, 160], peer_share=0.6)
    assert "1.50x the peer: the gap is in our upstream" in note and "of a core" not in note


def test_null_upstream_answers_a_uwsgi_packet(tmp_path):
    # the ceiling's upstream builds here (gcc) and answers whatever request with its body
    from harness import servers

    from uwsgid.net.packet import build_packet
    binary, why = servers.build_null_upstream(tmp_path)
    assert why is None and binary.exists()
    port = servers.free_port()
    proc = subprocess.Popen([str(binary), str(port), "Hello Ceiling"])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                c = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, "null upstream did not start"
                time.sleep(0.05)
        with c:
            c.sendall(build_packet(0, {b"REQUEST_METHOD": b"GET", b"PATH_INFO": b"/"}))
            got = b""
            while chunk := c.recv(4096):
                got += chunk
        assert got.startswith(b"HTTP/1.1 200 OK\r\n") and got.endswith(b"\r\n\r\nHello Ceiling")
        assert b"Content-Length: 13\r\n" in got
    finally:
        proc.kill()
        proc.wait(5)
