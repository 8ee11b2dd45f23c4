"""bench/startup.py (start-up time against real uWSGI) runs in its quick mode, alone and from
bench/run.py, and reports every case in its table and JSON. No timing is asserted: a verdict may
be PASS or MISS; what is checked is that each side was measured (or says why not)."""

import json
import subprocess
import sys

import pytest
from helpers import ROOT

sys.path.insert(0, str(ROOT / "bench"))

import startup  # noqa: E402

CASES = ["startup-version", "startup-wsgi", "startup-lua"]


def _check_side(side: dict, runs: int) -> None:
    if side["error"]:
        # a side that cannot run says what is missing; anything else is the harness's bug
        assert side["error"].startswith("missing:"), side
        assert side["median"] is None
        return
    assert len(side["runs"]) == runs and all(ms > 0 for ms in side["runs"]), side
    assert side["median"] > 0 and side["command"]
    assert "PORT" in side["command"] or "--version" in side["command"]


def test_quick_run_measures_every_case_on_both_sides(tmp_path):
    out = tmp_path / "startup.json"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "startup.py"), "--quick", "--runs", "1",
                        "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[1].split()[:4] == ["case", "ours", "ms", "uWSGI"], r.stdout
    for case in ("version", "wsgi", "lua"):
        assert any(line.startswith(case + " ") for line in lines), r.stdout
    doc = json.loads(out.read_text())
    assert doc["runs"] == 1 and [res["id"] for res in doc["results"]] == CASES
    for res in doc["results"]:
        assert res["status"] in {"pass", "miss", "info", "skip"}, res
        _check_side(res["ours"], 1)
        _check_side(res["peer"], 1)
        if res["ours"]["median"] and res["peer"]["median"]:
            assert res["ratio"] == pytest.approx(res["ours"]["median"] / res["peer"]["median"])
    if all(res["status"] == "skip" for res in doc["results"]):
        pytest.skip("nothing measurable here: " + "; ".join(res["reason"] for res in doc["results"]))


def test_bench_run_includes_the_start_up_scenarios(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--list"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and all(c in r.stdout for c in CASES), r.stdout
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--only", "startup-version",
                        "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads((tmp_path / "latest.json").read_text())
    [res] = doc["scenarios"]
    assert res["id"] == "startup-version" and res["unit"] == "ms" and "startup-version" in r.stdout
    _check_side(res["ours"], startup.default_runs(quick=True))


def test_table_states_the_absolute_version_target():
    def side(ms):
        return {"median": ms, "cpu_median": None, "error": None}

    def res(id_, ours, peer, target, status):
        return {"id": id_, "ours": side(ours), "peer": side(peer), "ratio": ours / peer, "target": target,
                "target_op": "<=", "status": status}
    text = startup.table([res("startup-version", 40.0, 5.0, None, "info"),
                          res("startup-wsgi", 120.0, 30.0, 3.0, "miss")])
    version, wsgi = text.splitlines()[2:4]
    assert "ours <= 50 ms" in version and "PASS" in version and "8.00" in version
    assert "<= 3x" in wsgi and "MISS" in wsgi and "4.00" in wsgi
