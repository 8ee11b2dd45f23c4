#!/usr/bin/env python3
"""Side-by-side benchmarks: this server (./uwsgi) against real uWSGI 2.0 and gunicorn.

    bench/run.py [--quick] [--only SCENARIO ...] [--duration S] [--runs N] [--out DIR] [--list]

For each scenario both servers run at once on free loopback ports with the same app, workers and
logging setting; the load alternates ours, peer, ours, peer...; the figure per side is the median
of its runs and the verdict compares ours/peer with the issue's target. A side that cannot run
(./uwsgi not built, a peer or an example app missing) is reported as SKIP with a "missing: ..."
line; the other side is still measured. Misses are printed plainly.

Outputs: the table on stdout, DIR/latest.json (machine, date, commands, every run, medians, ratios,
targets, verdicts) and DIR/ratios.png; DIR is bench/results for a full run, bench/results/partial
for --only and --quick (untracked). Exit status: 0 when the harness ran (whatever the
verdicts), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import memory  # noqa: E402  (bench/memory.py: the worker-memory scenarios)
import startup  # noqa: E402  (bench/startup.py: the start-up scenarios)
from harness import load, machine, report, servers  # noqa: E402
from harness.scenarios import (  # noqa: E402
    ALL_IDS,
    CURVE_ASYNC,
    CURVE_SLEEP_S,
    CURVE_WORKERS,
    SCENARIOS,
    SLEEP,
    Scenario,
    curve_spec,
)
from harness.servers import ROOT, Server, ServerSpec, StartError, free_port  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PARTIAL = RESULTS / "partial"   # where --only and --quick runs write unless --out says: not tracked
CHOICES = [*ALL_IDS, *startup.IDS, *memory.IDS]     # load scenarios, curve, start-up, memory (bench/*.py)
FRONT_SATURATED = 0.95   # nginx's share of a core from which it, not the upstream, sets the pace


def parse_args(argv):
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one short run per side and scenario (smoke mode)")
    p.add_argument("--only", nargs="+", metavar="SCENARIO",
                   help=f"run only these (space- or comma-separated): {', '.join(CHOICES)}")
    p.add_argument("--duration", type=float, help="seconds per wrk run (default 5, quick 2)")
    p.add_argument("--runs", type=int, help="runs per side (default 3, quick 1)")
    p.add_argument("--out", type=Path, help=f"where latest.json and ratios.png go (default: {RESULTS} "
                   f"for a full run, {PARTIAL} for --only or --quick, so a partial run never replaces "
                   f"the figures the README quotes)")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    a = p.parse_args(argv)
    if a.only:      # "a b" or "a,b" (or both)
        a.only = [name for arg in a.only for name in arg.split(",") if name]
        bad = [s for s in a.only if s not in CHOICES]
        if bad:
            p.error(f"unknown scenario {', '.join(bad)} (choose from {', '.join(CHOICES)})")
    a.duration = a.duration or (2.0 if a.quick else 5.0)
    a.runs = a.runs or (1 if a.quick else 3)
    a.out = a.out or (PARTIAL if a.only or a.quick else RESULTS)
    if a.duration < 1 or a.runs < 1:
        p.error("--duration must be >= 1 and --runs >= 1")
    return a


class Bench:
    def __init__(self, args):
        self.args = args
        self.log_dir = Path(tempfile.mkdtemp(prefix="uwsgid-bench-"))
        self.live: list[Server] = []

    # --- servers ------------------------------------------------------------------------------
    def start(self, spec: ServerSpec, timeout: float = 60.0) -> Server:
        srv = Server(spec, self.log_dir)
        self.live.append(srv)
        srv.start(timeout)
        return srv

    def stop_all(self) -> None:
        while self.live:
            self.live.pop().stop()

    def warm_up(self, url: str, headers) -> None:
        if not self.args.quick:
            try:
                load.run_wrk(url, 1, 8, 1, headers)
            except load.LoadError:
                pass  # the measured runs will report it

    # --- one scenario --------------------------------------------------------------------------
    def scenario(self, sc: Scenario) -> dict:
        res = {"id": sc.id, "title": sc.title, "peer_name": sc.peer_name, "kind": sc.kind,
               "metric": sc.metric, "unit": sc.unit, "target_op": sc.target_op, "target": sc.target,
               "target_on": sc.target_on,
               "note": sc.note, "status": None, "reason": "", "ratio": None, "load": {},
               "ours": {"command": None, "runs": [], "median": None, "error": None},
               "peer": {"command": None, "runs": [], "median": None, "error": None}}
        missing = [f"missing: {p.relative_to(ROOT)}" for p in sc.needs if not p.exists()]
        tool = self._tool_missing(sc)
        if missing or tool:
            res["status"], res["reason"] = "skip", "; ".join(missing + ([tool] if tool else []))
            return res
        if sc.prepare is not None:
            sc.prepare()
        sides = {}
        ours_why, peer_why = servers.ours_available(), sc.peer_missing()
        if ours_why:
            res["ours"]["error"] = ours_why
        else:
            sides["ours"] = sc.ours
        if peer_why:
            res["peer"]["error"] = peer_why
        else:
            sides["peer"] = sc.peer
        if sc.nginx_modifier1 is not None and sides:
            # a third upstream behind the same nginx, one that does no work: nginx's own ceiling
            res["ceiling"] = {"command": None, "runs": [], "median": None, "error": None}
            binary, why = servers.build_null_upstream(self.log_dir)
            if why:
                res["ceiling"]["error"] = why
            else:
                body = sc.expect or b"Hello World"
                sides["ceiling"] = lambda port: servers.null_upstream(binary, port, body)
        if sides:
            try:
                {"wrk": self._wrk, "rss": self._rss, "paced": self._paced,
                 "locust": self._locust, "client": self._client}[sc.kind](sc, sides, res)
            finally:
                self.stop_all()
        self._verdict(sc, res)
        return res

    def _tool_missing(self, sc: Scenario) -> str | None:
        why = servers.binary_missing("wrk", "apt-get install wrk")  # load, and warm-up for locust
        if why:
            return why
        if sc.nginx_modifier1 is not None:
            return servers.binary_missing("nginx", "apt-get install nginx-light")
        if sc.kind == "locust":
            return servers.binary_missing(servers.VENV_BIN / "locust", "pip install locust; `make bench` does it")
        return sc.tool_missing()

    def _start_sides(self, sc: Scenario, sides: dict, res: dict) -> dict[str, tuple[Server, str]]:
        """Start each side (behind one shared nginx when the scenario says so); returns label -> (server, url)."""
        started, urls = {}, {}
        self.front = None
        for label, make in sides.items():
            spec = make(free_port())
            res[label]["command"] = spec.command
            try:
                started[label] = self.start(spec)
                urls[label] = f"{spec.scheme}://127.0.0.1:{spec.port}{sc.path}"
            except StartError as exc:
                res[label]["error"] = str(exc)
        if sc.nginx_modifier1 is not None and started:
            routes = {label: free_port() for label in started}
            prefix = self.log_dir / f"nginx-{sc.id}"
            conf = servers.nginx_conf(prefix, [(routes[l], started[l].spec.port, sc.nginx_modifier1)
                                               for l in started], sc.nginx_workers)
            spec = ServerSpec("nginx", ["nginx", "-p", str(prefix), "-c", str(conf)],
                              next(iter(routes.values())), signal.SIGTERM, http_ready=False)
            try:
                self.front = self.start(spec)
            except StartError as exc:
                for label in started:
                    res[label]["error"] = f"nginx: {exc}"
                return {}
            res["load"]["nginx"] = {"command": spec.command, "conf": conf.read_text()}
            urls = {l: f"http://127.0.0.1:{routes[l]}{sc.path}" for l in started}
        ready = {}
        for label, srv in started.items():
            if sc.preflight is not None:      # no HTTP there (raw-echo): the scenario's own check
                why, answer = sc.preflight(srv.spec.port), {}
            else:
                why, answer = self._preflight(urls[label], sc)
            res[label]["answer"] = answer
            if why:
                res[label]["error"] = f"{why}; log: {srv.log_tail()}"
            else:
                ready[label] = (srv, urls[label])
        return ready

    def _preflight(self, url: str, sc: Scenario, timeout: float = 30.0) -> tuple[str | None, dict]:
        """One GET must answer 200 (with the expected text) before any figure counts; what it
        answered (status, size, headers) is kept, so both sides' answers can be compared."""
        scheme, rest = url.split("://", 1)
        host_port, path = rest.split("/", 1)
        host, port = host_port.split(":")
        deadline, why, answer = time.monotonic() + timeout, "no answer", {}
        while time.monotonic() < deadline:
            try:
                conn = servers.http_connection(scheme, host, int(port), 20)
                conn.request("GET", "/" + path, headers={"Connection": "close"})
                r = conn.getresponse()
                body = r.read()
                conn.close()
                answer = {"status": r.status, "body_bytes": len(body), "headers": r.getheaders()}
                if r.status == 200 and (sc.expect is None or sc.expect in body):
                    return None, answer
                why = f"preflight GET /{path} answered {r.status}: {body[:160]!r}"
                if r.status != 502:  # nginx's 502 while the upstream warms up: retry
                    return why, answer
            except (OSError, http.client.HTTPException) as exc:
                why = f"preflight GET /{path} failed: {type(exc).__name__}: {exc}"
            time.sleep(0.2)
        return why, answer

    def _alternate(self, ready: dict, measure, res: dict) -> None:
        """Runs in the order ours, peer, ours, peer, ... ; a run's problem is kept with its figures."""
        for i in range(self.args.runs):
            for label, (srv, url) in ready.items():
                if res[label]["error"]:
                    continue
                try:
                    run = measure(label, srv, url)
                except load.LoadError as exc:
                    run = {"value": None, "problem": str(exc)}
                if srv.proc.poll() is not None:
                    res[label]["error"] = f"server died during the run: {srv.log_tail()}"
                res[label]["runs"].append(run)

    def _wrk(self, sc: Scenario, sides: dict, res: dict) -> None:
        ready = self._start_sides(sc, sides, res)
        res["load"]["command"] = " ".join(load.wrk_command("URL", self.args.duration, sc.connections, 2,
                                                           sc.headers))
        for _, url in ready.values():
            self.warm_up(url, sc.headers)

        def measure(label, srv, url):
            # CPU the server spent per request: much steadier than req/s on a shared machine.
            front = self.front
            cpu0 = srv.cpu_seconds()
            fcpu0 = front.cpu_seconds() if front is not None else 0.0
            r = load.run_wrk(url, self.args.duration, sc.connections, 2, sc.headers)
            if r["requests"]:
                r["server_cpu_us_per_request"] = (srv.cpu_seconds() - cpu0) * 1e6 / r["requests"]
                if front is not None:
                    # nginx's share of one core: at ~100% the front end, not the upstream, sets req/s
                    fcpu = front.cpu_seconds() - fcpu0
                    r["front_cpu_us_per_request"] = fcpu * 1e6 / r["requests"]
                    r["front_cpu_share"] = fcpu / (r["duration_us"] / 1e6)
            value = r["rps"]
            if sc.metric == "req_per_cpu_s":   # CPU per request, inverted (static scenarios)
                cpu_us = r.get("server_cpu_us_per_request")
                value = 1e6 / cpu_us if cpu_us else None
            return {"value": value, "problem": load.wrk_problem(r, self.args.duration), **r}
        self._alternate(ready, measure, res)
        if sc.worker_free is not None:
            self.stop_all()
            self._worker_free(sc, res)

    def _worker_free(self, sc: Scenario, res: dict) -> None:
        """One worker per side, --offload-threads: is a request answered during a stalled large
        download? (bench/harness/static_files.py worker_free)"""
        from harness import static_files
        res["worker_free"] = {}
        for label, make in (("ours", sc.worker_free), ("peer", sc.peer_worker_free)):
            if res[label]["error"] and res[label]["error"].startswith("missing:"):
                continue
            spec = make(free_port())
            check = {"command": spec.command}
            try:
                self.start(spec)
                check.update(static_files.worker_free(spec.port))
            except StartError as exc:
                check["problem"] = str(exc)
            finally:
                self.stop_all()
            res["worker_free"][label] = check

    def _rss(self, sc: Scenario, sides: dict, res: dict) -> None:
        """A fresh server per run: load it, then read its workers' memory (RSS; PSS/USS too)."""
        import psutil
        res["load"]["command"] = " ".join(load.wrk_command("URL", self.args.duration, sc.connections, 2,
                                                           sc.headers))
        for _ in range(self.args.runs):
            for label, make in sides.items():
                if res[label]["error"]:
                    continue
                ready = self._start_sides(sc, {label: make}, res)
                if label not in ready:
                    continue
                srv, url = ready[label]
                try:
                    r = load.run_wrk(url, self.args.duration, sc.connections, 2, sc.headers)
                    time.sleep(0.3)  # let the last responses finish before reading memory
                    mem = []
                    for pid in srv.worker_pids():
                        try:
                            full = psutil.Process(pid).memory_full_info()
                            mem.append({"pid": pid, "rss_mb": full.rss / 2**20, "pss_mb": full.pss / 2**20,
                                        "uss_mb": full.uss / 2**20})
                        except psutil.Error:
                            pass
                    problem = load.wrk_problem(r, self.args.duration) or \
                        (None if mem else "no worker process found")
                    value = statistics.median(m["rss_mb"] for m in mem) if mem else None
                    res[label]["runs"].append({"value": value, "problem": problem, "workers": mem,
                                               "rps": r["rps"], "requests": r["requests"]})
                except load.LoadError as exc:
                    res[label]["runs"].append({"value": None, "problem": str(exc)})
                finally:
                    self.stop_all()

    def _paced(self, sc: Scenario, sides: dict, res: dict) -> None:
        from harness.scenarios import PACED_RATE
        ready = self._start_sides(sc, sides, res)
        res["load"]["command"] = " ".join(load.paced_command("127.0.0.1", 0, sc.path, PACED_RATE,
                                                             self.args.duration)).replace(" 0 ", " PORT ")
        for _, url in ready.values():
            self.warm_up(url, {})

        def measure(label, srv, url):
            port = int(url.split(":")[2].split("/")[0])
            r = load.run_paced("127.0.0.1", port, sc.path, PACED_RATE, self.args.duration)
            return {"value": r["latency_ms"]["p99"], "problem": load.paced_problem(r), **r}
        self._alternate(ready, measure, res)

    def _client(self, sc: Scenario, sides: dict, res: dict) -> None:
        """A scripted client per side (ws-echo, chunk-delay); the server's CPU per counted unit beside it."""
        ready = self._start_sides(sc, sides, res)
        res["load"]["command"] = sc.client_command

        def measure(label, srv, url):
            port = int(url.split(":")[2].split("/")[0])
            if not self.args.quick:
                sc.client(port, label, 1.0)      # warm-up
            cpu0 = srv.cpu_seconds()
            r = sc.client(port, label, self.args.duration)
            if r.get("count"):
                r["server_cpu_us_per_request"] = (srv.cpu_seconds() - cpu0) * 1e6 / r["count"]
            return r
        self._alternate(ready, measure, res)

    def _locust(self, sc: Scenario, sides: dict, res: dict) -> None:
        ready = self._start_sides(sc, sides, res)
        duration = max(3.0, self.args.duration * (1 if self.args.quick else 2))
        res["load"]["command"] = " ".join(load.locust_command("URL", sc.locust_user, sc.locust_users,
                                                              duration))
        res["load"]["env"] = sc.locust_env
        for _, url in ready.values():
            self.warm_up(url, {})

        def measure(label, srv, url):
            host = url[:-len(sc.path)] if url.endswith(sc.path) else url
            r = load.run_locust(host, sc.locust_user, sc.locust_users, duration, sc.locust_env)
            return {"value": r["latency_ms"]["p99"], "problem": load.locust_problem(r), **r}
        self._alternate(ready, measure, res)

    @staticmethod
    def _front_note(sc: Scenario, res: dict) -> str:
        """Behind nginx, what bounds a miss: nginx's own ceiling (the no-work upstream's req/s
        against the peer's in the same round, and nginx's CPU share), or our upstream."""
        parts = []
        share = (res.get("front_cpu_share") or {}).get("peer")
        if share is not None and share >= FRONT_SATURATED:
            parts.append(f"nginx (one worker) used {share:.0%} of a core with the peer")
        # Paired by round (the peer's run and the no-work upstream's follow each other): a slow
        # phase of the machine then hits both figures of a pair instead of one side's median.
        ceiling_runs = (res.get("ceiling") or {}).get("runs", [])
        pairs = [c["value"] / p["value"] for p, c in zip(res["peer"]["runs"], ceiling_runs)
                 if p.get("value") and c.get("value") and not p.get("problem") and not c.get("problem")]
        if pairs:
            c = res["ceiling_ratio"] = statistics.median(pairs)
            if c < sc.target:
                parts.append(f"an upstream doing no work (bench/apps/null_upstream.c) reached only "
                             f"{c:.2f}x the peer behind this nginx: the target is beyond nginx's ceiling")
            else:
                parts.append(f"an upstream doing no work reached {c:.2f}x the peer: the gap is in our upstream")
        elif parts:
            parts.append("so the peer's req/s is nginx's ceiling")
        return "; ".join(parts)

    # --- verdicts -------------------------------------------------------------------------------
    def _verdict(self, sc: Scenario, res: dict) -> None:
        for label in ("ours", "peer", "ceiling"):
            if label not in res:
                continue
            side = res[label]
            good = [r["value"] for r in side["runs"] if r.get("value") is not None and not r.get("problem")]
            bad = [r["problem"] for r in side["runs"] if r.get("problem")]
            side["median"] = statistics.median(good) if good else None
            if bad and not side["error"]:
                side["error"] = f"{len(bad)} of {len(side['runs'])} runs unusable: {bad[0]}"
        o, p = res["ours"], res["peer"]
        if o["median"] is not None and p["median"] is not None and p["median"] > 0:
            res["ratio"] = o["median"] / p["median"]
        why = []
        if o["error"]:
            why.append(f"ours: {o['error']}")
        if p["error"]:
            why.append(f"peer: {p['error']}")
        res["reason"] = " | ".join(why)
        if sc.target_on == "ours" and o["median"] is not None:
            # an absolute target on our own figure; the peer's is there for reference
            ok = o["median"] >= sc.target if sc.target_op == ">=" else o["median"] <= sc.target
            res["status"] = "pass" if ok else "miss"
        elif res["ratio"] is not None and sc.target is None:
            res["status"] = "info"     # reported, no target in the issue
        elif res["ratio"] is not None:
            ok = res["ratio"] >= sc.target if sc.target_op == ">=" else res["ratio"] <= sc.target
            res["status"] = "pass" if ok else "miss"
        elif (o["error"] or "").startswith("missing:") or (p["error"] or "").startswith("missing:"):
            res["status"] = "skip"
        else:
            res["status"] = "error"
        if sc.kind in ("wrk", "client"):
            cpu = {label: [r["server_cpu_us_per_request"] for r in res[label]["runs"]
                           if r.get("server_cpu_us_per_request") and not r.get("problem")]
                   for label in ("ours", "peer")}
            res["server_cpu_us_per_request"] = {l: statistics.median(v) if v else None for l, v in cpu.items()}
            share = {label: [r["front_cpu_share"] for r in res[label]["runs"] if "front_cpu_share" in r]
                     for label in ("ours", "peer")}
            if share["peer"]:
                res["front_cpu_share"] = {l: statistics.median(v) if v else None for l, v in share.items()}
                res["front_cpu_us_per_request"] = {
                    label: statistics.median(r["front_cpu_us_per_request"] for r in res[label]["runs"]
                                             if "front_cpu_us_per_request" in r) if share[label] else None
                    for label in ("ours", "peer")}
            if res["status"] == "miss":
                note = self._front_note(sc, res)
                if note:
                    res["reason"] = (res["reason"] + " | " if res["reason"] else "") + note
        if sc.metric == "req_per_cpu_s":
            rps = {label: [r["rps"] for r in res[label]["runs"] if r.get("rps") and not r.get("problem")]
                   for label in ("ours", "peer")}
            res["rps"] = {l: statistics.median(v) if v else None for l, v in rps.items()}
            if res["rps"]["ours"] and res["rps"]["peer"]:
                res["rps_ratio"] = res["rps"]["ours"] / res["rps"]["peer"]
        free = (res.get("worker_free") or {}).get("ours")
        if free is not None and not (free.get("answered") and free.get("download_pending")
                                     and free.get("download_complete")):
            why = free.get("problem") or "no answer while the download was under way"
            res["reason"] = (res["reason"] + " | " if res["reason"] else "") + f"worker not free during a download: {why}"
            if res["status"] == "pass":
                res["status"] = "miss"
        if sc.kind == "wrk" and res["ratio"] is not None:
            res["bytes_per_response"] = {
                label: statistics.median(r["bytes_per_request"] for r in res[label]["runs"]
                                         if "bytes_per_request" in r) for label in ("ours", "peer")}
            # Headers differ (Content-Length, Date, Server...); the body must not be smaller.
            bo = (o.get("answer") or {}).get("body_bytes")
            bp = (p.get("answer") or {}).get("body_bytes")
            if bo is not None and bp and bo < 0.9 * bp:
                res["reason"] = (res["reason"] + " | " if res["reason"] else "") + \
                    f"ours answers a smaller body ({bo} vs {bp} bytes): check the scenario"

    # --- the scaling curve (ours only) ---------------------------------------------------------------
    def curve(self) -> dict:
        title = (f"scaling curve (ours only; bench/apps/sleep.lua waits {CURVE_SLEEP_S * 1000:.0f} ms "
                 f"per request with uwsgi.async_sleep; keep-alive, wrk -c 2*workers*async)")
        configs = [("workers", w, 1) for w in CURVE_WORKERS] + [("async", 1, a) for a in CURVE_ASYNC]
        out = {"title": title, "points": [], "reason": "",
               "note": "real uWSGI's lua async_sleep takes whole seconds (0.05 -> 0, no wait): no peer curve"}
        why = servers.ours_available() or servers.binary_missing("wrk", "apt-get install wrk") or \
            (None if SLEEP.exists() else f"missing: {SLEEP.relative_to(ROOT)}")
        measured: dict[tuple[int, int], dict] = {}
        for series, workers, cores in configs:
            point = {"series": series, "workers": workers, "async": cores,
                     "ideal": workers * cores / CURVE_SLEEP_S, "rps": None, "p50_ms": None}
            out["points"].append(point)
            if why:
                point["problem"] = why
                continue
            if (workers, cores) in measured:   # the (1 worker, async 1) point belongs to both series
                point.update({k: v for k, v in measured[(workers, cores)].items() if k != "series"})
                continue
            spec = curve_spec(free_port(), workers, cores)
            point["command"] = spec.command
            conns = max(8, 2 * workers * cores)
            try:
                self.start(spec)
                url = f"http://127.0.0.1:{spec.port}/"
                self.warm_up(url, {})
                runs = [load.run_wrk(url, self.args.duration, conns, 2) for _ in range(self.args.runs)]
                best = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]
                point.update({"rps": best["rps"], "p50_ms": best["latency_us"]["p50"] / 1000,
                              "runs": runs, "connections": conns})
                problem = load.wrk_problem(best, self.args.duration)
                if not problem and point["p50_ms"] < CURVE_SLEEP_S * 1000 * 0.9:
                    problem = "answers faster than the 50 ms wait: async_sleep not honoured"
                point["problem"] = problem
            except (StartError, load.LoadError) as exc:
                point["problem"] = str(exc)[:300]
            finally:
                self.stop_all()
            measured[(workers, cores)] = dict(point)
        if why:
            out["reason"] = why
        return out


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.list:
        for s in SCENARIOS:
            target = f"target {s.target_op} {s.target}" if s.target is not None else "no target, reported"
            if s.target_on == "ours" and s.target is not None:
                target = f"target ours {s.target_op} {s.target:g} {s.unit}"
            print(f"{s.id:14} {s.title}  [peer: {s.peer_name}, {target}]")
        print(f"{'curve':14} scaling curve, ours only: --processes {CURVE_WORKERS}, --async {CURVE_ASYNC}")
        for c in startup.CASES:
            target = f"target {c.target_op} {c.target}" if c.target is not None else \
                f"target ours <= {startup.VERSION_TARGET_MS:.0f} ms"
            print(f"{c.id:14} {c.title}  [peer: uWSGI, {target}] (bench/startup.py)")
        for case_id, (title, _) in memory.CASES.items():
            print(f"{case_id:14} {title}  [peer: uWSGI, target {memory.TARGETS[case_id]}] (bench/memory.py)")
        return 0
    wanted = args.only or CHOICES
    bench = Bench(args)
    # SIGTERM/SIGHUP stop the harness like Ctrl-C, so every server is stopped by PID on the way out.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    started = dt.datetime.now(dt.timezone.utc)
    doc = {"date": started.isoformat(timespec="seconds"), "mode": "quick" if args.quick else "full",
           "args": {"only": args.only, "duration_s": args.duration, "runs": args.runs},
           "machine": machine.describe(), "logs": str(bench.log_dir), "scenarios": [], "curve": None,
           "method": ("both servers up at once on loopback, runs alternate ours/peer; figure per side = "
                      "median of its runs; ratio = ours/peer; wrk -t2 -c32 unless said; "
                      "both sides --disable-logging (gunicorn/nginx: no access log)")}
    args.out.mkdir(parents=True, exist_ok=True)
    out_json, out_png = args.out / "latest.json", args.out / "ratios.png"
    print(f"bench: {doc['mode']} mode, {args.runs} run(s) of {args.duration:g}s per side; "
          f"server logs in {bench.log_dir}", flush=True)
    if os.getloadavg()[0] > 1.0:
        print(f"bench: warning: load average {os.getloadavg()[0]:.1f} before starting: other work on this "
              f"machine will skew the figures (compare the ratios, and CPU per request)", flush=True)
    try:
        for sc in SCENARIOS:
            if sc.id not in wanted:
                continue
            t0 = time.monotonic()
            load1 = os.getloadavg()[0]
            res = bench.scenario(sc)
            # Other work on the machine skews req/s: keep the 1-minute load average with the figures.
            res["loadavg_before"] = round(load1, 2)
            res["elapsed_s"] = round(time.monotonic() - t0, 1)
            doc["scenarios"].append(res)
            ratio = "-" if res["ratio"] is None else f"{res['ratio']:.2f}"
            extra = f"  req/s ratio {res['rps_ratio']:.2f}" if res.get("rps_ratio") else ""
            for label, free in (res.get("worker_free") or {}).items():
                extra += (f"  {label}: free worker {'yes' if free.get('answered') else 'NO'}"
                          + (f" ({free['latency_ms']} ms)" if free.get("latency_ms") is not None else ""))
            print(f"  {sc.id:14} {res['status']:5} ratio {ratio:>5}{extra}  ({res['elapsed_s']}s)"
                  + (f"  {report.short(res['reason'], 200)}" if res["reason"] else ""), flush=True)
            report.write_json(out_json, doc)
        if "curve" in wanted:
            doc["curve"] = bench.curve()
            report.write_json(out_json, doc)
        todo = [i for i in startup.IDS if i in wanted]
        memory_todo = [i for i in memory.IDS if i in wanted]
        if todo or memory_todo:
            def done(res):
                doc["scenarios"].append(res)
                ratio = "-" if res["ratio"] is None else f"{res['ratio']:.2f}"
                print(f"  {res['id']:14} {res['status']:5} ratio {ratio:>5}"
                      + (f"  {report.short(res['reason'], 200)}" if res["reason"] else ""), flush=True)
                report.write_json(out_json, doc)
            if todo:
                startup.run(todo, startup.default_runs(args.quick), bench.log_dir, progress=done)
            if memory_todo:
                memory.run(memory_todo, args.quick, bench.log_dir, progress=done)
    except KeyboardInterrupt:
        print("bench: interrupted; servers stopped, partial results kept", file=sys.stderr)
        doc["interrupted"] = True
    finally:
        bench.stop_all()
    doc["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    report.write_json(out_json, doc)
    m = doc["machine"]
    subtitle = (f"{doc['date']} - {m['cpu']}, {m['cores']} cores, load avg {m['loadavg_at_start'][0]:.1f} "
                f"at start - {doc['mode']} mode, {args.runs} x {args.duration:g}s per side - commit {m['git_commit']}")
    chart_problem = report.chart(out_png, doc["scenarios"], doc["curve"], subtitle)
    print()
    print(report.table(doc["scenarios"], doc["curve"]))
    print(f"\nresults: {out_json}" + (f"  chart: {out_png}" if not chart_problem else f"  ({chart_problem})"))
    return 130 if doc.get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())
