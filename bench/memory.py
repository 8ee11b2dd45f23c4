#!/usr/bin/env python3
"""Worker memory, side by side: this server (./uwsgi) against real uWSGI 2.0 (Debian's uwsgi-core).

    bench/memory.py [--quick] [--only lua-cores lua-workers python both lua-gc] [--json FILE]

Every server runs under `--master`, `--disable-logging`, on a free loopback port; after a short
wrk load (-t1 -c64, Connection: close, 3 s; 1 s in quick mode) each worker's Rss, Pss and
Private_Dirty are read from /proc/PID/smaps_rollup (MB; the figure of a case is the median of
its workers). They are also read once before the load, when the server has answered its
readiness request (`at_start` in the JSON, "priv at start" in the table): what a worker's
start-up costs, apart from what serving adds. The sides run one after the other (ours, then uWSGI's, for each setting).
  lua-cores    pippo.lua, 1 worker, --async 1/8/64 and --threads 1/8: the private memory each core
               costs (KB per core: (async64 - async1) / 63 and (threads8 - threads1) / 7); target
               ours/uWSGI <= 2 for each, the case passes only if both do
  lua-workers  pippo.lua, --async 8, 4 workers: PSS per worker ours/uWSGI <= 3, and our private
               dirty per worker <= 1.5 MB
  python       hello.py, 4 workers: PSS per worker ours/uWSGI <= 1.2
  both         pippo.lua + hello.py in one instance (--http-socket-modifier1 6, the load on the Lua
               app), 2 workers: PSS per worker ours/uWSGI <= 1.2
  lua-gc       bench/apps/gc_alloc.lua (a table of 100 new strings per request), 1 worker, ours with
               --lua-gc-freq 1, 10, 100 and --lua-gc-freq 1 --lua-gc-full; wrk (keep-alive) in
               chunks until 1,000,000 requests (20,000 quick), the worker's RSS sampled after each
               chunk. Flat: last sample <= 1.10 x the first sample taken after 10% of the requests
               (the warm-up). uWSGI 2.0's --lua-gc-freq takes no value (its default collects fully
               after every request): its default runs beside ours for reference, over 200,000
               requests (it closes every connection, so it is slower; 20,000 quick).
The peer loads `--plugin lua51`, `python3` or both (no http plugin: --http-socket is uWSGI's core).
A side that cannot run is SKIP with what is missing. Servers are stopped by PID (SIGINT, then
their process group is killed). Quick mode takes about a minute, full mode about 11 minutes
(the GC case takes 9 of them: 4 x 1,000,000 requests).

Also run by `bench/run.py` (scenarios memory-*). Exit status 0 whenever it ran.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import startup  # noqa: E402  (free ports, the sides' availability, stopping by PID)
from harness import load  # noqa: E402

ROOT, OURS, PEER = startup.ROOT, startup.OURS, startup.PEER
PIPPO, HELLO = startup.PIPPO, startup.HELLO
GC_APP = startup.BENCH / "apps" / "gc_alloc.lua"
LUA = ("--http-socket-modifier1", "6", "--lua", str(PIPPO))
CONNECTIONS = 64
CLOSE = {"Connection": "close"}     # uWSGI's --http-socket closes anyway: both sides do the same work
GC_REQUESTS = {True: 20_000, False: 1_000_000}      # quick -> requests per GC setting (ours)
GC_PEER_REQUESTS = {True: 20_000, False: 200_000}   # uWSGI closes every connection: slower, a reference
GC_CHUNK_S = {True: 1, False: 5}
GC_FLAT = 1.10       # last <= first-after-warm-up x 1.10
GC_WARM_UP = 0.10    # of the requests
# the targets: ratios ours/uWSGI, except the private dirty one (ours, MB)
SLOPE_TARGET, LUA_PSS_TARGET, PSS_TARGET, LUA_PRIVATE_MB = 2.0, 3.0, 1.2, 1.5


class BenchError(RuntimeError):
    pass


class Setting:
    """One server configuration, run on both sides: the extra args after the common ones."""

    def __init__(self, label, ours, peer, peer_plugin, workers, expect):
        self.label, self.ours, self.peer = label, list(ours), list(peer)
        self.peer_plugin, self.workers, self.expect = peer_plugin, workers, expect


def lua(label, *extra, workers=1):
    return Setting(label, [*extra, *LUA], [*extra, *LUA], "lua51", workers, b"Hello Wsapi")


CORES = [lua("async 1", "--async", "1"), lua("async 8", "--async", "8"), lua("async 64", "--async", "64"),
         lua("threads 1", "--threads", "1"), lua("threads 8", "--threads", "8")]
SLOPES = {"async": ("async 1", "async 64"), "threads": ("threads 1", "threads 8")}
CASES = {
    "memory-lua-cores": ("pippo.lua, 1 worker, --async 1/8/64, --threads 1/8: private memory per core", CORES),
    "memory-lua-workers": ("pippo.lua, --async 8, 4 workers: PSS and private dirty per worker",
                           [lua("async 8, 4 workers", "--async", "8", workers=4)]),
    "memory-python": ("hello.py, 4 workers: PSS per worker",
                      [Setting("4 workers", ["--wsgi-file", str(HELLO)], ["--wsgi-file", str(HELLO)],
                               "python3", 4, b"Hello World")]),
    "memory-both": ("pippo.lua + hello.py in one instance, 2 workers: PSS per worker",
                    [Setting("2 workers", [*LUA, "--wsgi-file", str(HELLO)], [*LUA, "--wsgi-file", str(HELLO)],
                             "lua51,python3", 2, b"Hello Wsapi")]),
    "memory-lua-gc": ("gc_alloc.lua (100 new strings per request), 1 worker: RSS over the requests", None),
}
IDS = list(CASES)
TARGETS = {"memory-lua-cores": f"KB/core ours/uWSGI <= {SLOPE_TARGET:g}, async and threads",
           "memory-lua-workers": f"PSS <= {LUA_PSS_TARGET:g}x, ours private dirty <= {LUA_PRIVATE_MB:g} MB",
           "memory-python": f"PSS <= {PSS_TARGET:g}x", "memory-both": f"PSS <= {PSS_TARGET:g}x",
           "memory-lua-gc": f"ours flat: last RSS <= {GC_FLAT:g} x after warm-up"}
GC_OURS = [("--lua-gc-freq 1", ["--lua-gc-freq", "1"]), ("--lua-gc-freq 10", ["--lua-gc-freq", "10"]),
           ("--lua-gc-freq 100", ["--lua-gc-freq", "100"]),
           ("--lua-gc-freq 1 --lua-gc-full", ["--lua-gc-freq", "1", "--lua-gc-full"])]
GC_PEER = ("default (full collection after every request)", [])


# --- reading a process's memory ---------------------------------------------------------------

def smaps(pid: int) -> dict:
    """Rss, Pss and Private_Dirty of a process in MB, from /proc/PID/smaps_rollup."""
    want = {"Rss:": "rss_mb", "Pss:": "pss_mb", "Private_Dirty:": "private_dirty_mb"}
    out = {"pid": pid}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(" ")
                if key in want:
                    out[want[key]] = int(rest.split()[0]) / 1024
    except (OSError, ValueError, IndexError) as exc:
        raise BenchError(f"cannot read /proc/{pid}/smaps_rollup: {exc}") from None
    if len(out) != 4:
        raise BenchError(f"/proc/{pid}/smaps_rollup lacks Rss/Pss/Private_Dirty")
    return out


def children(pid: int) -> list[int]:
    kids = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(k) for k in f.read().split()]
    except OSError:
        pass
    return sorted(kids)


class Running:
    """A server under --master on a free port: started, answering `expect`, its workers known."""

    def __init__(self, argv_of, workers: int, expect: bytes, log_path: Path):
        self.port = startup.free_port()
        self.argv = argv_of(self.port)
        self.command = " ".join(self.argv).replace(str(self.port), "PORT")
        self.workers_wanted, self.expect, self.log_path = workers, expect, log_path
        self.proc = None
        self.workers: list[int] = []

    def __enter__(self):
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=ROOT, start_new_session=True)
        try:
            self._wait_ready(30.0)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_):
        startup._stop(self.proc)
        self.log.close()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        answer = None
        while answer is None:
            answer = startup._get(self.port)
            if self.proc.poll() is not None:
                raise BenchError(f"exited with {self.proc.returncode}: {startup._tail(self.log_path)}")
            if time.monotonic() > deadline:
                raise BenchError(f"no answer after {timeout:.0f} s: {startup._tail(self.log_path)}")
            time.sleep(0.05)
        if b" 200" not in answer.split(b"\r\n", 1)[0] or self.expect not in answer:
            raise BenchError(f"first answer was {answer[:160]!r}: {startup._tail(self.log_path)}")
        while len(self.workers) != self.workers_wanted:
            self.workers = children(self.proc.pid)
            if time.monotonic() > deadline:
                raise BenchError(f"{len(self.workers)} worker process(es), expected {self.workers_wanted}")
            time.sleep(0.05)

    def load(self, seconds: float, headers=CLOSE) -> dict:
        r = load.run_wrk(f"http://127.0.0.1:{self.port}/", seconds, CONNECTIONS, 1, headers)
        problem = load.wrk_problem(r, seconds)
        if problem:
            raise BenchError(f"wrk: {problem}")
        return r

    def memory(self) -> dict:
        """Every worker's figures and the master's; the medians of the workers."""
        if children(self.proc.pid) != self.workers:
            raise BenchError("a worker was respawned during the load: " + startup._tail(self.log_path))
        workers = [smaps(pid) for pid in self.workers]
        out = {k: statistics.median(w[k] for w in workers) for k in ("rss_mb", "pss_mb", "private_dirty_mb")}
        return {**out, "workers": workers, "master": smaps(self.proc.pid)}


def argv_ours(extra: list[str], workers: int):
    return lambda port: [str(OURS), "--master", "--processes", str(workers), "--disable-logging",
                         "--http-socket", f"127.0.0.1:{port}", *extra]


def argv_peer(plugin: str, extra: list[str], workers: int):
    return lambda port: [str(PEER), "--plugin", plugin, "--master", "--processes", str(workers),
                         "--disable-logging", "--http-socket", f"127.0.0.1:{port}", *extra]


def missing(label: str, plugin: str, needs: list[Path]) -> str | None:
    absent = [f"missing: {p.relative_to(ROOT)}" for p in needs if not p.exists()]
    if absent:
        return "; ".join(absent)
    if not shutil.which("wrk"):
        return "missing: wrk (apt-get install wrk; `make bench` does it)"
    if label == "ours":
        return startup.ours_missing()
    for p in plugin.split(","):
        why = startup.peer_missing(p)
        if why:
            return why
    return startup.peer_missing(None)


# --- the cases ---------------------------------------------------------------------------------

def measure_setting(case_id: str, s: Setting, seconds: float, log_dir: Path) -> dict:
    """Both sides of one setting: {"ours": figures or error, "peer": ...}."""
    out = {"label": s.label, "workers": s.workers}
    sides = {"ours": argv_ours(s.ours, s.workers), "peer": argv_peer(s.peer_plugin, s.peer, s.workers)}
    for label, argv_of in sides.items():
        side = out[label] = {"command": None, "error": missing(label, s.peer_plugin, [PIPPO, HELLO])}
        if side["error"]:
            continue
        log = log_dir / f"{case_id}-{s.label.replace(' ', '_').replace(',', '')}-{label}.log"
        try:
            with Running(argv_of, s.workers, s.expect, log) as srv:
                side["command"] = srv.command
                start = srv.memory()
                side["at_start"] = {k: start[k] for k in ("rss_mb", "pss_mb", "private_dirty_mb")}
                side["requests"] = srv.load(seconds)["requests"]
                time.sleep(0.2)
                side.update(srv.memory())
        except (BenchError, load.LoadError, OSError, subprocess.SubprocessError) as exc:
            side["error"] = str(exc)[:400]
    return out


def check(name: str, unit: str, ours, peer, target: float, on: str = "ratio") -> dict:
    """A target: on the ratio ours/peer, or ("ours") on our own figure."""
    ratio = ours / peer if ours is not None and peer is not None and peer > 0 else None
    value = ratio if on == "ratio" else ours
    status = None if value is None else ("pass" if value <= target else "miss")
    return {"name": name, "unit": unit, "ours": ours, "peer": peer, "ratio": ratio, "target": target,
            "target_on": on, "status": status}


def slope_kb(settings: dict, side: str, lo: str, hi: str) -> float | None:
    a, b = settings[lo].get(side, {}), settings[hi].get(side, {})
    if "private_dirty_mb" not in a or "private_dirty_mb" not in b:
        return None
    cores = int(hi.split()[-1]) - int(lo.split()[-1])
    return (b["private_dirty_mb"] - a["private_dirty_mb"]) * 1024 / cores


def checks_for(case_id: str, settings: dict) -> list[dict]:
    fig = {label: {side: settings[label].get(side, {}) for side in ("ours", "peer")} for label in settings}
    if case_id == "memory-lua-cores":
        return [check(f"{mode} private dirty per core", "KB/core", slope_kb(settings, "ours", lo, hi),
                      slope_kb(settings, "peer", lo, hi), SLOPE_TARGET) for mode, (lo, hi) in SLOPES.items()]
    [f] = fig.values()      # one setting
    pss = check("PSS per worker", "MB", f["ours"].get("pss_mb"), f["peer"].get("pss_mb"),
                LUA_PSS_TARGET if case_id == "memory-lua-workers" else PSS_TARGET)
    if case_id != "memory-lua-workers":
        return [pss]
    return [pss, check("private dirty per worker", "MB", f["ours"].get("private_dirty_mb"),
                       f["peer"].get("private_dirty_mb"), LUA_PRIVATE_MB, on="ours")]


def verdict(res: dict, checks: list[dict], errors: list[str]) -> None:
    """The case's status and headline figures (bench/run.py's form) from its checks: pass only if
    every check passes; the headline is the check furthest from its target."""
    res["checks"] = checks
    measured = [c for c in checks if c["status"]]
    head = max(measured, key=lambda c: (c["ratio"] if c["target_on"] == "ratio" else c["ours"]) / c["target"],
               default=checks[0] if checks else None)
    if head:
        res.update(metric=head["name"], unit=head["unit"], target=head["target"], target_on=head["target_on"],
                   ratio=head["ratio"])
        res["ours"]["median"], res["peer"]["median"] = head["ours"], head["peer"]
    res["reason"] = " | ".join(errors)
    if measured and len(measured) == len(checks):
        res["status"] = "miss" if any(c["status"] == "miss" for c in checks) else "pass"
    elif any(c["status"] == "miss" for c in checks):
        res["status"] = "miss"
    elif errors and all(e.split(": ", 1)[-1].startswith("missing:") for e in errors):
        res["status"] = "skip"
    else:
        res["status"] = "error"
        if not errors:
            res["reason"] = "uWSGI's figure is 0 or below (noise?): no ratio"
    if len(checks) > 1:
        res["note"] = "; ".join(f"{c['name']}: {_f(c['ours'], 2)} vs {_f(c['peer'], 2)} {c['unit']}"
                                + (f" ({c['ratio']:.2f}x)" if c["ratio"] is not None else "") for c in checks)
        # bench/run.py's table shows one figure per case: the others go with its notes
        res["reason"] = "; ".join(filter(None, [res["reason"], res["note"]]))


def new_result(case_id: str, title: str, peer_name: str) -> dict:
    return {"id": case_id, "title": title, "peer_name": peer_name, "kind": "memory", "metric": "", "unit": "MB",
            "target_op": "<=", "target": None, "target_on": "ratio", "status": None, "reason": "", "ratio": None,
            "note": "", "ours": {"median": None, "error": None}, "peer": {"median": None, "error": None}}


def measure(case_id: str, quick: bool, log_dir: Path) -> dict:
    title, settings = CASES[case_id]
    if settings is None:
        return measure_gc(quick, log_dir)
    res = new_result(case_id, title, f"uWSGI {settings[0].peer_plugin}")
    res["settings"] = {s.label: measure_setting(case_id, s, 1.0 if quick else 3.0, log_dir) for s in settings}
    errors = []
    for label in ("ours", "peer"):
        errs = sorted({r[label]["error"] for r in res["settings"].values() if r[label]["error"]})
        res[label]["error"] = "; ".join(errs) or None
        res[label]["command"] = next((r[label]["command"] for r in res["settings"].values()), None)
        errors += [f"{label}: {e}" for e in errs]
    verdict(res, checks_for(case_id, res["settings"]), errors)
    return res


# --- the GC case: RSS over a million requests --------------------------------------------------

def gc_series(srv: Running, total: int, chunk_s: int) -> dict:
    """wrk (keep-alive) in chunks until `total` requests; the worker's memory after each chunk."""
    samples, done = [], 0
    t0 = time.monotonic()
    while done < total:
        done += srv.load(chunk_s, headers=None)["requests"]
        samples.append({"requests": done, **{k: v for k, v in srv.memory().items()
                                             if k in ("rss_mb", "pss_mb", "private_dirty_mb")}})
    return {"samples": samples, "seconds": round(time.monotonic() - t0, 1), **flatness(samples, total)}


def flatness(samples: list[dict], total: int) -> dict:
    """RSS at the first sample, at 10%, 50%, the last and the max; flat when the last is within
    GC_FLAT of the first sample taken after the warm-up (GC_WARM_UP of the requests)."""
    rss = [s["rss_mb"] for s in samples]

    def at(share):
        return next(s["rss_mb"] for s in samples if s["requests"] >= share * total or s is samples[-1])
    warm = at(GC_WARM_UP)
    growth = rss[-1] / warm
    return {"rss_first_mb": rss[0], "rss_10pct_mb": warm, "rss_50pct_mb": at(0.5), "rss_last_mb": rss[-1],
            "rss_max_mb": max(rss), "growth": growth, "flat": growth <= GC_FLAT}


def measure_gc(quick: bool, log_dir: Path) -> dict:
    case_id = "memory-lua-gc"
    res = new_result(case_id, CASES[case_id][0], "uWSGI lua51 (its default GC)")
    chunk = GC_CHUNK_S[quick]
    res.update(requests=GC_REQUESTS[quick], rule=f"flat: last RSS <= {GC_FLAT:g} x the RSS after {GC_WARM_UP:.0%} of the requests",
               runs={"ours": {}, "peer": {}})
    errors = []
    plan = [("ours", label, argv_ours([*extra, *LUA[:2], "--lua", str(GC_APP)], 1)) for label, extra in GC_OURS]
    plan.append(("peer", GC_PEER[0], argv_peer("lua51", [*GC_PEER[1], *LUA[:2], "--lua", str(GC_APP)], 1)))
    for side, label, argv_of in plan:
        why = missing(side, "lua51", [GC_APP])
        series = res["runs"][side][label] = {"error": why}
        if not why:
            try:
                with Running(argv_of, 1, b"100 strings", log_dir / f"{case_id}-{side}-{len(res['runs'][side])}.log") as srv:
                    series["command"] = res[side]["command"] = srv.command
                    total = (GC_REQUESTS if side == "ours" else GC_PEER_REQUESTS)[quick]
                    series.update(requests=total, **gc_series(srv, total, chunk))
            except (BenchError, load.LoadError, OSError, subprocess.SubprocessError) as exc:
                series["error"] = str(exc)[:400]
        if series["error"]:
            res[side]["error"] = series["error"]
            errors.append(f"{side} {label}: {series['error']}")
    checks = [check(f"RSS growth, {label}", "x", series.get("growth"), None, GC_FLAT, on="ours")
              for label, series in res["runs"]["ours"].items()]
    peer_growth = next(iter(res["runs"]["peer"].values())).get("growth")
    for c in checks:
        c["peer"] = peer_growth
        c["ratio"] = c["ours"] / peer_growth if c["ours"] is not None and peer_growth else None
    verdict(res, checks, errors)
    res["note"] = res["rule"] + "; growth = last / after warm-up"
    return res


def run(ids: list[str] | None = None, quick: bool = False, log_dir: Path | None = None, progress=None) -> list[dict]:
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="uwsgid-memory-"))
    out = []
    for case_id in IDS:
        if ids and case_id not in ids:
            continue
        t0 = time.monotonic()
        res = measure(case_id, quick, log_dir)
        res["elapsed_s"] = round(time.monotonic() - t0, 1)
        out.append(res)
        if progress:
            progress(res)
    return out


# --- tables ------------------------------------------------------------------------------------

def _f(v, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _grid(rows: list[tuple]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _mem(side: dict) -> str:
    return "/".join(_f(side.get(k)) for k in ("rss_mb", "pss_mb", "private_dirty_mb")) if "rss_mb" in side else "-"


def table(results: list[dict]) -> str:
    """Per setting: RSS/PSS/private dirty of a worker on each side; per target: the verdict; the GC
    series. Then what could not be measured."""
    rows = [("case", "setting", "ours RSS/PSS/priv MB", "uWSGI RSS/PSS/priv MB", "priv at start ours/uWSGI")]
    for r in results:
        for label, s in (r.get("settings") or {}).items():
            at_start = "/".join(_f(s[side].get("at_start", {}).get("private_dirty_mb")) for side in ("ours", "peer"))
            rows.append((r["id"].removeprefix("memory-"), label, _mem(s["ours"]), _mem(s["peer"]), at_start))
    lines = _grid(rows) + [""] if len(rows) > 1 else []
    rows = [("case", "figure", "ours", "uWSGI", "ours/uWSGI", "target", "verdict")]
    for r in results:
        for c in r.get("checks", []):
            target = f"<= {c['target']:g}x" if c["target_on"] == "ratio" else f"ours <= {c['target']:g} {c['unit']}"
            verdict_ = {"pass": "PASS", "miss": "MISS <<<"}.get(c["status"], "-")
            rows.append((r["id"].removeprefix("memory-"), f"{c['name']} ({c['unit']})", _f(c["ours"], 2),
                         _f(c["peer"], 2), _f(c["ratio"], 3), target, verdict_))
        rows.append((r["id"].removeprefix("memory-"), "case", "", "", "", "",
                     {"pass": "PASS", "miss": "MISS <<<", "skip": "SKIP", "error": "ERROR <<<"}[r["status"]]))
    lines += _grid(rows)
    for r in results:
        if r.get("runs"):
            lines += ["", f"worker RSS (MB) over the requests; {r['rule']}:"]
            rows = [("side", "setting", "requests", "first", "10%", "50%", "last", "max", "growth", "flat")]
            for side, runs in r["runs"].items():
                for label, run in runs.items():
                    rows.append(("ours" if side == "ours" else "uWSGI", label, f"{run.get('requests') or 0:,}", *(_f(run.get(f"rss_{k}_mb")) for k in (
                        "first", "10pct", "50pct", "last", "max")), _f(run.get("growth"), 3),
                        "-" if "flat" not in run else ("yes" if run["flat"] else "NO <<<")))
            lines += _grid(rows)
    errors = [f"  {r['id']}: {label}: {r[label]['error']}" for r in results for label in ("ours", "peer")
              if r[label]["error"]]
    return "\n".join(lines + (["", "not measured:"] + errors if errors else []))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench/memory.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1 s of load per side, 20,000 requests per GC setting")
    p.add_argument("--only", nargs="+", choices=[i.removeprefix("memory-") for i in IDS], help="run only these cases")
    p.add_argument("--json", type=Path, help="also write every figure to this file")
    a = p.parse_args(argv)
    ids = [f"memory-{c}" for c in a.only] if a.only else None
    print(f"memory: {'quick' if a.quick else 'full'} mode ({os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f})", flush=True)
    results = run(ids, a.quick, progress=lambda r: print(f"  {r['id']}: {r['status']} ({r['elapsed_s']} s)",
                                                          flush=True))
    print(table(results))
    if a.json:
        a.json.write_text(json.dumps({"mode": "quick" if a.quick else "full", "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
