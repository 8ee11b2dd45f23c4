"""bench/memory.py (worker memory against real uWSGI) runs its cheapest case in quick mode, alone
and from bench/run.py, and its verdicts follow the issue's rules. No figure is asserted against a
target here (a verdict may be PASS or MISS): what is checked is that each side was measured from
/proc (or says why not), and that the verdict and flatness code compute what they say."""

import json
import subprocess
import sys

import pytest
from helpers import ROOT

sys.path.insert(0, str(ROOT / "bench"))

import memory  # noqa: E402


def _check_side(side: dict, workers: int) -> None:
    if side["error"]:
        assert side["error"].startswith("missing:"), side     # anything else is the harness's bug
        return
    assert "PORT" in side["command"] and "--disable-logging" in side["command"]
    assert len(side["workers"]) == workers and side["requests"] > 0
    start = side["at_start"]       # before the load: what the start-up costs
    assert start["rss_mb"] >= start["pss_mb"] > 0 and start["rss_mb"] >= start["private_dirty_mb"] > 0, start
    for w in side["workers"] + [side["master"]]:
        assert w["pid"] > 0 and w["rss_mb"] >= w["pss_mb"] > 0 and w["rss_mb"] >= w["private_dirty_mb"] > 0, w


def test_quick_python_case_reads_every_worker(tmp_path):
    out = tmp_path / "memory.json"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "memory.py"), "--quick", "--only", "python",
                        "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ours RSS/PSS/priv MB" in r.stdout and "PSS per worker (MB)" in r.stdout, r.stdout
    doc = json.loads(out.read_text())
    [res] = doc["results"]
    assert doc["mode"] == "quick" and res["id"] == "memory-python"
    assert res["status"] in {"pass", "miss", "skip"}, res
    setting = res["settings"]["4 workers"]
    _check_side(setting["ours"], 4)
    _check_side(setting["peer"], 4)
    if res["status"] == "skip":
        pytest.skip("nothing measurable here: " + res["reason"])
    [check] = res["checks"]
    assert check["ours"] == pytest.approx(setting["ours"]["pss_mb"])
    assert res["ratio"] == pytest.approx(setting["ours"]["pss_mb"] / setting["peer"]["pss_mb"])


def test_bench_run_lists_and_runs_the_memory_cases(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--list"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and all(i in r.stdout for i in memory.IDS), r.stdout
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--only", "memory-python",
                        "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    [res] = json.loads((tmp_path / "latest.json").read_text())["scenarios"]
    assert res["id"] == "memory-python" and res["unit"] == "MB" and "memory-python" in r.stdout
    _check_side(res["settings"]["4 workers"]["ours"], 4)


def _side(pd=None, pss=None):
    return {"command": "x", "error": None, "rss_mb": 20.0, "pss_mb": pss, "private_dirty_mb": pd}


def _result(case_id, settings):
    res = memory.new_result(case_id, "t", "uWSGI lua51")
    res["settings"] = settings
    memory.verdict(res, memory.checks_for(case_id, settings), [])
    return res


def test_per_core_slopes_pass_only_if_async_and_threads_both_do():
    # ours: +63 KB over 63 async cores (1 KB/core), +0.7 MB over 7 threads (~102 KB/thread);
    # uWSGI: 15 KB/core and 30 KB/thread -> async 0.07x passes, threads 3.4x misses
    mb = {"async 1": (3.0, 0.1), "async 8": (3.0, 0.2), "async 64": (3.0 + 63 / 1024, 0.1 + 63 * 15 / 1024),
          "threads 1": (3.0, 0.1), "threads 8": (3.7, 0.1 + 7 * 30 / 1024)}
    settings = {k: {"ours": _side(o), "peer": _side(p)} for k, (o, p) in mb.items()}
    res = _result("memory-lua-cores", settings)
    async_, threads = res["checks"]
    assert async_["ours"] == pytest.approx(1.0) and async_["peer"] == pytest.approx(15.0)
    assert async_["status"] == "pass" and threads["status"] == "miss"
    assert threads["ratio"] == pytest.approx(0.7 * 1024 / 7 / 30)
    assert res["status"] == "miss" and res["ratio"] == threads["ratio"] and res["unit"] == "KB/core"
    text = memory.table([res])
    assert "threads private dirty per core (KB/core)" in text and "MISS <<<" in text


def test_lua_workers_needs_both_pss_ratio_and_absolute_private_dirty():
    settings = {"async 8, 4 workers": {"ours": _side(pd=1.4, pss=2.9), "peer": _side(pd=0.5, pss=1.0)}}
    assert _result("memory-lua-workers", settings)["status"] == "pass"
    settings["async 8, 4 workers"]["ours"]["private_dirty_mb"] = 1.6
    res = _result("memory-lua-workers", settings)
    assert res["status"] == "miss" and [c["status"] for c in res["checks"]] == ["pass", "miss"]
    assert res["target_on"] == "ours" and res["ours"]["median"] == 1.6     # the headline is the miss


def test_missing_peer_is_a_skip_and_a_zero_peer_slope_an_error():
    res = memory.new_result("memory-python", "t", "uWSGI python3")
    res["settings"] = {"4 workers": {"ours": _side(pss=5.0), "peer": {"command": None, "error": "missing: x"}}}
    memory.verdict(res, memory.checks_for("memory-python", res["settings"]), ["peer: missing: x"])
    assert res["status"] == "skip" and res["ratio"] is None
    flat = {k: {"ours": _side(1.0), "peer": _side(0.5)} for k in ("async 1", "async 64", "threads 1", "threads 8")}
    assert _result("memory-lua-cores", flat)["status"] == "error"


def test_flatness_takes_the_first_sample_after_the_warm_up():
    samples = [{"requests": n, "rss_mb": rss} for n, rss in
               [(50_000, 10.0), (150_000, 15.0), (500_000, 16.0), (1_000_000, 16.4)]]
    f = memory.flatness(samples, 1_000_000)
    assert f["rss_first_mb"] == 10.0 and f["rss_10pct_mb"] == 15.0 and f["rss_50pct_mb"] == 16.0
    assert f["growth"] == pytest.approx(16.4 / 15.0) and f["flat"] is True
    samples[-1]["rss_mb"] = 16.6      # > 15.0 x 1.10
    assert memory.flatness(samples, 1_000_000)["flat"] is False
