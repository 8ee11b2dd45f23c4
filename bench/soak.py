#!/usr/bin/env python3
"""A reliability run anyone can repeat: mixed load on both runtimes of one instance while the
server is reloaded, loses a worker, holds a slowloris attack and is fed bad input.

    bench/soak.py [--quick] [--duration S] [--only ours|uwsgi ...] [--rate R] [--out DIR]

One instance per side, `--master --processes 2`, pippo.lua and hello.py both loaded: an
--http-socket (hello.py) and a --socket (uwsgi protocol; modifier1 6 runs pippo.lua, 0 hello.py),
and a --stats server. Against it, for the whole run: five open-loop request streams (150 req/s in all
by default: HTTP new connection per request, HTTP keep-alive GET, HTTP keep-alive POST with a body,
uwsgi modifier1 6, uwsgi modifier1 0) and a bad-input fuzzer (20 inputs/s). At 25% of the run the
master gets SIGHUP (graceful reload); from 30% to 70% slowloris holds 300 connections on the
--http-socket while a probe times normal requests on both sockets; at 50% one worker, found
through the stats server, is SIGKILLed. Then one table: requests sent, answered right, failed and
why (and which failures were on the killed worker), RSS and open fds at the start and the end,
the fuzz inputs and their answers, and the probe. Sides run one after the other: this server
(./uwsgi), then Debian's uWSGI 2.0.21 (--plugins python3,lua51) when installed.

Outputs: the table on stdout and DIR/soak-latest.json (every figure, the plan, the commands, the
machine). Targets are reported, not asserted; the exit status is 0 whenever the run happened,
2 on a usage error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import machine, procinfo, report, servers  # noqa: E402
from harness.fuzz import Fuzzer  # noqa: E402
from harness.servers import OURS, PEER_UWSGI, ROOT, Server, ServerSpec, StartError, free_port  # noqa: E402
from harness.slowloris import Slowloris, probe  # noqa: E402
from harness.soakclients import KINDS, Client, Kind, Stream  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PIPPO = ROOT / "examples" / "pippo.lua"
HELLO = ROOT / "examples" / "hello.py"
HOST = "127.0.0.1"
WORKERS = 2

# When things happen, as fractions of the run.
AT_RELOAD, AT_SLOW_START, AT_KILL, AT_SLOW_END = 0.25, 0.30, 0.50, 0.70

# "Flat": what the end may add to the start without being called growth.
RSS_FLAT = 0.10         # +10% of RSS, for the sum and for each worker
FDS_FLAT = 3            # +3 open fds per process
# While slowloris holds its connections, the probe's normal requests: answered, and fast.
PROBE_ANSWERED, PROBE_P99_MS = 0.99, 100.0

SIDES = {"ours": "this server (./uwsgi)", "uwsgi": "uWSGI 2.0.21 (Debian)"}


def parse_args(argv):
    p = argparse.ArgumentParser(prog="bench/soak.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[2:]))
    p.add_argument("--duration", type=float, help="seconds of soak per side (default 180; --quick 20)")
    p.add_argument("--quick", action="store_true", help="a 20 s run per side (smoke mode)")
    p.add_argument("--only", nargs="+", choices=list(SIDES), help="run only these sides (default: both)")
    p.add_argument("--rate", type=float, default=150.0, help="requests per second, all streams together (default 150)")
    p.add_argument("--fuzz-rate", type=float, default=20.0, help="bad inputs per second (default 20)")
    p.add_argument("--slowloris", type=int, default=300, help="slowloris connections, from 30%% to 70%% of the run (default 300)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds a request may take before it failed (default 5)")
    p.add_argument("--seed", type=int, default=17, help="seed of the fuzzer and of the pacing (default 17)")
    p.add_argument("--out", type=Path, default=RESULTS, help="where soak-latest.json goes (default bench/results)")
    a = p.parse_args(argv)
    a.duration = a.duration or (20.0 if a.quick else 180.0)
    if a.duration < 8 or a.rate <= 0 or a.fuzz_rate <= 0 or a.slowloris < 0 or a.timeout <= 0:
        p.error("--duration must be >= 8; --rate, --fuzz-rate and --timeout > 0; --slowloris >= 0")
    return a


def side_spec(label: str, http: int, uwsgi: int, stats: int) -> ServerSpec:
    common = ["--master", "--processes", str(WORKERS), "--disable-logging",
              "--http-socket", f"{HOST}:{http}", "--socket", f"{HOST}:{uwsgi}", "--stats", f"{HOST}:{stats}",
              "--lua", str(PIPPO), "--wsgi-file", str(HELLO)]
    if label == "ours":
        argv = [str(OURS), *common]
    else:
        argv = [str(PEER_UWSGI), "--plugins", "python3,lua51", *common]
    # Stopped with SIGINT by PID (a uWSGI 2.0 master reloads on SIGTERM), then its process group.
    return ServerSpec(label, argv, http, signal.SIGINT)


def side_missing(label: str) -> str | None:
    if label == "ours":
        return servers.ours_available()
    return servers.peer_plugin_missing("python3") or servers.peer_plugin_missing("lua51")


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


class Soak:
    """One side's run: start the server, load it, do the timeline, read the figures, stop it."""

    def __init__(self, label: str, args, log_dir: Path):
        self.label, self.args, self.log_dir = label, args, log_dir
        self.res: dict = {"label": label, "name": SIDES[label], "command": None, "error": None}
        self.events: list[tuple[float, str]] = []
        self.samples: list[dict] = []
        self.pid_changes: list[dict] = []
        self.t0 = 0.0

    def say(self, text: str) -> None:
        rel = time.monotonic() - self.t0 if self.t0 else 0.0
        print(f"  [{self.label} {rel:6.1f}s] {text}", flush=True)

    def rel(self, t: float) -> float:
        return round(t - self.t0, 3)

    # --- the run ------------------------------------------------------------------------------
    def run(self) -> dict:
        why = side_missing(self.label)
        if why:
            self.res["error"] = why
            return self.res
        http, uwsgi, stats = free_port(), free_port(), free_port()
        while len({http, uwsgi, stats}) < 3:
            uwsgi, stats = free_port(), free_port()
        self.ports = {"http": http, "uwsgi": uwsgi, "stats": stats}
        spec = side_spec(self.label, http, uwsgi, stats)
        self.res["command"] = spec.command
        self.res["ports"] = self.ports
        self.srv = Server(spec, self.log_dir)
        try:
            self.srv.start()
        except StartError as exc:
            self.res["error"] = str(exc)
            return self.res
        try:
            self._soak()
        except Exception as exc:   # noqa: BLE001  (keep what was measured, say what broke)
            import traceback
            self.res["error"] = f"the soak itself failed: {type(exc).__name__}: {exc}"
            self.res["traceback"] = traceback.format_exc()
            self.say(self.res["error"])
        finally:
            self.srv.stop()
            self._server_log()
        return self.res

    def _preflight(self) -> dict:
        """One request of each kind must be answered right before the run starts (30 s to warm)."""
        answers = {}
        for kind, _ in KINDS:
            deadline = time.monotonic() + 30
            while True:
                port = self.ports["http" if kind.proto == "http" else "uwsgi"]
                o = Client(kind, HOST, port, self.args.timeout).request("/preflight")
                if o.ok or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            answers[kind.name] = "ok" if o.ok else f"{o.why}: {o.detail}"
        return answers

    def _soak(self) -> None:
        a, D = self.args, self.args.duration
        master = self.srv.pid
        load0 = list(os.getloadavg())
        pre = self._preflight()
        self.res["preflight"] = pre
        bad = {k: v for k, v in pre.items() if v != "ok"}
        if bad:
            self.say(f"preflight: not answered right: {bad}")
        if len(bad) == len(pre):
            raise RuntimeError(f"no kind of request was answered right: {bad}")

        stop_load, stop_all, record = threading.Event(), threading.Event(), threading.Event()
        total_share = sum(share for _, share in KINDS)
        streams = [Stream(kind, a.rate * share / total_share) for kind, share in KINDS]
        threads = []
        for n, st in enumerate(streams):
            port = self.ports["http" if st.kind.proto == "http" else "uwsgi"]
            threads += st.run(HOST, port, stop_load, a.timeout, a.seed + n, record)
        self.res["streams"] = [{"name": st.kind.name, "proto": st.kind.proto, "keepalive": st.kind.keepalive,
                                "method": st.kind.method, "body_bytes": len(st.kind.body),
                                "modifier1": st.kind.modifier1 if st.kind.proto == "uwsgi" else None,
                                "rate": round(st.rate, 1)} for st in streams]
        record.set()       # every outcome is kept; those that started within the run are counted
        warm = 2.0 if a.quick else 5.0
        time.sleep(warm)   # warm-up: the same load, not counted

        stats0 = procinfo.read_stats(self.ports["stats"])
        pids0 = procinfo.worker_pids(stats0)
        start_fp = procinfo.footprint(master, pids0)
        self.t0 = time.monotonic()
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        self.say(f"warm-up {warm:g}s done; soak for {D:g}s; workers {pids0}")

        fuzzer = Fuzzer(HOST, self.ports["http"], self.ports["uwsgi"], a.fuzz_rate, a.seed)
        threads += fuzzer.start(stop_load)
        monitor = threading.Thread(target=self._monitor, args=(master, stop_all), daemon=True)
        monitor.start()

        plan = {"reload_s": AT_RELOAD * D, "slowloris_start_s": AT_SLOW_START * D,
                "kill_s": AT_KILL * D, "slowloris_end_s": AT_SLOW_END * D, "end_s": D}
        self.res["plan"] = plan
        attack = None
        probes: dict[str, threading.Thread] = {}
        probe_res: dict[str, object] = {}
        reload_info: dict = {}
        kill_info: dict = {}

        def wait_until(rel_s: float) -> None:
            delay = self.t0 + rel_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)

        # 25%: SIGHUP, a graceful reload
        wait_until(plan["reload_s"])
        before = procinfo.worker_pids(procinfo.read_stats(self.ports["stats"]))
        t = time.monotonic()
        os.kill(master, signal.SIGHUP)
        reload_info.update({"at_s": self.rel(t), "old_pids": before})
        self.say(f"SIGHUP to the master (pid {master})")
        threading.Thread(target=self._watch_replaced, args=(set(before.values()), t, reload_info, None),
                         daemon=True).start()

        # 30%-70%: slowloris, and the probe on both sockets
        wait_until(plan["slowloris_start_s"])
        if a.slowloris:
            attack = Slowloris(HOST, self.ports["http"], a.slowloris, proto="http")
            attack.__enter__()
            t_slow0 = time.monotonic()
            self.say(f"slowloris: {attack.open} connections open on the --http-socket")
            until = self.t0 + plan["slowloris_end_s"]
            probe_kinds = {
                "http": (Kind("probe-http", "http"), self.ports["http"]),
                "uwsgi": (Kind("probe-uwsgi", "uwsgi", modifier1=6, expect=b"<p>Hello Wsapi!</p>",
                               echo_path=True), self.ports["uwsgi"]),
            }
            for name, (kind, port) in probe_kinds.items():
                def one(kind=kind, port=port):
                    o = Client(kind, HOST, port, 2.0).request("/probe")
                    if not o.ok:
                        raise RuntimeError(f"{o.why}: {o.detail}"[:120])
                    return True

                def run_probe(name=name, one=one):
                    probe_res[name] = probe(one, count=10**9, pause=0.05, until=until)
                probes[name] = threading.Thread(target=run_probe, daemon=True, name=f"probe-{name}")
                probes[name].start()
        else:
            t_slow0 = time.monotonic()

        # 50%: SIGKILL one worker, found through the stats server
        wait_until(plan["kill_s"])
        kill_info.update(self._kill_one())
        if kill_info.get("pid"):
            self.say(f"SIGKILL to worker {kill_info['worker_id']} (pid {kill_info['pid']}), which held "
                     f"{kill_info['held_connections']} client connections")
            threading.Thread(target=self._watch_replaced,
                             args=({kill_info["pid"]}, kill_info["_t"], kill_info, kill_info["worker_id"]),
                             daemon=True).start()
        else:
            self.say(f"no worker to kill: {kill_info.get('error')}")

        # 70%: the attack ends
        wait_until(plan["slowloris_end_s"])
        slow_info = {"connections": a.slowloris}
        if attack is not None:
            for th in probes.values():
                th.join(a.timeout + 5)
            slow_info.update({"open": attack.open, "reopened_after_server_close": attack.reopened})
            attack.__exit__(None, None, None)
            self.say(f"slowloris ends ({attack.reopened} of its connections were closed by the server "
                     f"and opened again)")
        t_slow1 = time.monotonic()
        for name, r in probe_res.items():
            slow_info[f"probe_{name}"] = {
                "requests": len(r.latencies) + len(r.failures), "answered": round(r.answered, 4),
                "p50_ms": None if not r.latencies else round(r.p(0.5) * 1000, 2),
                "p99_ms": None if not r.latencies else round(r.p(0.99) * 1000, 2),
                "max_ms": None if not r.latencies else round(r.latencies[-1] * 1000, 2),
                "failures": dict(Counter(f.split(":")[1].strip() if ":" in f else f for f in r.failures)),
            }
        self.res["slowloris"] = slow_info

        # the end: stop the load, let it settle, read the footprint again
        wait_until(D)
        t_end = time.monotonic()
        stop_load.set()
        for th in threads:
            th.join(a.timeout + 6)
        for st in streams:
            st.drain(a.timeout + 2)   # the requests already sent end by their own deadline
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        time.sleep(1.0)
        stats1 = procinfo.read_stats(self.ports["stats"])
        pids1 = procinfo.worker_pids(stats1)
        end_fp = procinfo.footprint(master, pids1)
        stop_all.set()
        monitor.join(5)
        self.say("load stopped; figures read")

        # --- figures ---------------------------------------------------------------------------------
        outcomes = [o for st in streams for o in st.outcomes if self.t0 <= o.t0 < t_end]
        self.res["requests"] = self._requests(outcomes, kill_info, t_slow0, t_slow1)
        self.res["requests"]["offered_rate"] = a.rate
        self.res["requests"]["achieved_rate"] = round(len(outcomes) / max(t_end - self.t0, 1e-9), 1)
        self.res["requests"]["client_in_flight_max"] = {st.kind.name: st.in_flight_max for st in streams}
        self.res["requests"]["not_sent_client_cap"] = sum(st.not_sent for st in streams)
        self.res["reload"] = {k: v for k, v in reload_info.items() if not k.startswith("_")}
        self.res["kill"] = {k: v for k, v in kill_info.items() if not k.startswith("_")}
        self.res["worker_changes"] = self.pid_changes
        self.res["unexpected_worker_deaths"] = self._unexpected(reload_info, kill_info)
        self.res["master_alive"] = self.srv.proc.poll() is None
        self.res["fuzz"] = self._fuzz(fuzzer)
        self.res["footprint"] = {"start": start_fp, "end": end_fp, "samples": self.samples,
                                 "worker_rss_drift_last_quarter": self._drift()}
        self.res["stats_end"] = _stats_extract(stats1)
        self.res["client_cpu_share"] = round(
            ((cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)) / max(t_end - self.t0, 1e-9), 3)
        self.res["verdicts"] = self._verdicts(start_fp, end_fp)
        self.res["loadavg"] = {"start": load0, "end": list(os.getloadavg())}

    # --- the timeline's helpers ----------------------------------------------------------------------
    def _kill_one(self) -> dict:
        pids = procinfo.worker_pids(procinfo.read_stats(self.ports["stats"]))
        if not pids:
            return {"error": "the stats server listed no worker", "at_s": self.rel(time.monotonic())}
        wid = min(pids)
        victim = pids[wid]
        t = time.monotonic()
        # Stopped for the few ms it takes to read which client connections it holds, then killed:
        # nothing it holds can change in between.
        try:
            os.kill(victim, signal.SIGSTOP)
            held = procinfo.held_client_ports(victim, {self.ports["http"], self.ports["uwsgi"]})
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            return {"error": f"worker {wid} (pid {victim}) was already gone", "at_s": self.rel(t)}
        return {"at_s": self.rel(t), "_t": t, "worker_id": wid, "pid": victim,
                "held_connections": len(held), "_held": held}

    def _watch_replaced(self, old: set[int], t: float, info: dict, wid: int | None) -> None:
        """Poll the stats until the old pids are gone and the workers are back (all of them, or worker `wid`)."""
        deadline = t + 90
        while time.monotonic() < deadline:
            pids = procinfo.worker_pids(procinfo.read_stats(self.ports["stats"], timeout=1.0))
            if wid is None:
                done = len(pids) == WORKERS and not (set(pids.values()) & old)
            else:
                done = wid in pids and pids[wid] not in old
            if done and all(procinfo.rss_kb(p) for p in pids.values()):
                info["replaced_after_s"] = round(time.monotonic() - t, 3)
                info["new_pids"] = pids
                return
            time.sleep(0.05)
        info["replaced_after_s"] = None

    def _monitor(self, master: int, stop: threading.Event) -> None:
        """Every second: the workers' pids (a change is a worker that died), RSS and fds of each."""
        last: dict[int, int] = {}
        every = 0.5 if self.args.quick else 1.0
        while not stop.wait(every):
            pids = procinfo.worker_pids(procinfo.read_stats(self.ports["stats"], timeout=1.0))
            now = time.monotonic()
            for wid, pid in pids.items():
                if wid in last and last[wid] != pid:
                    self.pid_changes.append({"at_s": self.rel(now), "worker_id": wid, "old": last[wid], "new": pid})
            last.update(pids)
            if pids:
                fp = procinfo.footprint(master, pids)
                self.samples.append({"at_s": self.rel(now), **{k: [v["rss_kb"], v["fds"], v["pid"]]
                                                               for k, v in fp.items()}})

    def _unexpected(self, reload_info: dict, kill_info: dict) -> list[dict]:
        """Worker pid changes that neither the reload nor the kill explain."""
        out = []
        r0 = reload_info.get("at_s", -1)
        r1 = r0 + (reload_info.get("replaced_after_s") or 30) + 2
        k0 = kill_info.get("at_s", -1)
        k1 = k0 + (kill_info.get("replaced_after_s") or 30) + 2
        for c in self.pid_changes:
            if r0 <= c["at_s"] <= r1:
                continue
            if c["worker_id"] == kill_info.get("worker_id") and k0 <= c["at_s"] <= k1:
                continue
            out.append(c)
        return out

    def _drift(self) -> dict | None:
        """Worker RSS from 75% of the run to its end: the same processes (no event after 70%)."""
        D = self.args.duration
        late = [s for s in self.samples if s["at_s"] >= 0.75 * D]
        if len(late) < 2:
            return None
        first, last = late[0], late[-1]
        out = {"from_s": first["at_s"], "to_s": last["at_s"]}
        for k in first:
            if k.startswith("worker") and k in last and first[k][2] == last[k][2]:
                out[k] = {"rss_kb": [first[k][0], last[k][0]], "fds": [first[k][1], last[k][1]]}
        return out

    # --- figures -----------------------------------------------------------------------------------
    def _requests(self, outcomes, kill_info: dict, t_slow0: float, t_slow1: float) -> dict:
        held = kill_info.get("_held", set())
        t_kill = kill_info.get("_t")
        ok = [o for o in outcomes if o.ok]
        failed = [o for o in outcomes if not o.ok]

        def on_killed(o) -> bool:
            # in flight on a connection the killed worker held, when it was killed
            return (t_kill is not None and o.port in held and o.t0 <= t_kill + 0.05
                    and t_kill <= o.t1 <= t_kill + self.args.timeout + 1)

        killed = [o for o in failed if on_killed(o)]
        other = [o for o in failed if not on_killed(o)]
        stale = [o for o in outcomes if o.retried]
        stale_killed = [o for o in stale if o.stale_port in held and t_kill is not None and o.t0 >= t_kill - 0.05]
        lat = [(o.t1 - o.t0) * 1000 for o in ok]
        D = self.args.duration
        phases = {"0-25% (before SIGHUP)": (0, AT_RELOAD * D), "25-30% (SIGHUP)": (AT_RELOAD * D, AT_SLOW_START * D),
                  "30-70% (slowloris, SIGKILL at 50%)": (AT_SLOW_START * D, AT_SLOW_END * D),
                  "70-75%": (AT_SLOW_END * D, 0.75 * D), "75-100% (quiet)": (0.75 * D, D)}
        by_phase = {}
        for name, (a, b) in phases.items():
            inside = [o for o in outcomes if a <= o.t0 - self.t0 < b]
            pl = [(o.t1 - o.t0) * 1000 for o in inside if o.ok]
            by_phase[name] = {"sent": len(inside), "ok": len(pl), "p50": _r(pct(pl, 0.5)), "p99": _r(pct(pl, 0.99)),
                              "max": _r(max(pl) if pl else None)}
        quiet = [(o.t1 - o.t0) * 1000 for o in ok
                 if o.t0 - self.t0 < AT_RELOAD * D or o.t0 - self.t0 >= 0.75 * D]
        during_slow = [o for o in other if t_slow0 <= o.t1 <= t_slow1 + self.args.timeout]
        by_stream = {}
        for o in outcomes:
            s = by_stream.setdefault(o.stream, {"sent": 0, "ok": 0, "failed": Counter()})
            s["sent"] += 1
            if o.ok:
                s["ok"] += 1
            else:
                s["failed"][o.why] += 1
        for s in by_stream.values():
            s["failed"] = dict(s["failed"])
        seconds = Counter(int(o.t1 - self.t0) for o in failed)
        return {
            "sent": len(outcomes), "ok": len(ok), "failed": len(failed),
            "failed_on_killed_worker": len(killed),
            "failed_on_killed_worker_by_why": dict(Counter(o.why for o in killed)),
            "failed_other": len(other), "failed_other_by_why": dict(Counter(o.why for o in other)),
            "failed_other_during_slowloris": len(during_slow),
            "retried_stale_keepalive": len(stale), "retried_stale_on_killed_worker": len(stale_killed),
            "latency_ms": {"p50": _r(pct(lat, 0.5)), "p99": _r(pct(lat, 0.99)), "max": _r(max(lat) if lat else None)},
            "latency_quiet_ms": {"p50": _r(pct(quiet, 0.5)), "p99": _r(pct(quiet, 0.99)),
                                 "max": _r(max(quiet) if quiet else None)},
            "by_phase": by_phase,
            "by_stream": by_stream,
            "failures_per_second": {str(k): v for k, v in sorted(seconds.items())},
            "failure_samples": [{"at_s": self.rel(o.t1), "stream": o.stream, "why": o.why,
                                 "detail": o.detail[:160], "took_s": round(o.t1 - o.t0, 3)}
                                for o in (killed + other)[:30]],
            "slowest": [{"at_s": self.rel(o.t0), "stream": o.stream, "ms": round((o.t1 - o.t0) * 1000, 1),
                         "retried": o.retried} for o in sorted(ok, key=lambda o: o.t0 - o.t1)[:15]],
        }

    def _fuzz(self, fuzzer: Fuzzer) -> dict:
        t = fuzzer.tally
        with t.lock:
            doc = {"sent": dict(t.sent), "answers": {f"{p} {a}": n for (p, a), n in sorted(t.answers.items())},
                   "by_input": {f"{p} {k} -> {a}": n for (p, k, a), n in sorted(t.by_input.items())},
                   "samples": t.samples}
        # inputs sent just before a worker died unexpectedly: the first suspects
        doc["before_unexpected_deaths"] = [
            {"change": c, "inputs": t.recent_before(self.t0 + c["at_s"], 3.0)}
            for c in self.res.get("unexpected_worker_deaths", [])][:3]
        return doc

    def _verdicts(self, start: dict, end: dict) -> dict:
        req = self.res["requests"]
        v = {"lost_outside_killed_worker": {"value": req["failed_other"], "target": 0,
                                            "met": req["failed_other"] == 0}}

        def rss(fp, names):
            vals = [fp[n]["rss_kb"] for n in names if n in fp and fp[n]["rss_kb"] is not None]
            return sum(vals) if vals else None

        names = sorted(set(start) & set(end))
        workers = [n for n in names if n.startswith("worker")]
        s_sum, e_sum = rss(start, names), rss(end, names)
        per_worker_ok = all(end[n]["rss_kb"] is not None and start[n]["rss_kb"] and
                            end[n]["rss_kb"] <= start[n]["rss_kb"] * (1 + RSS_FLAT) for n in workers)
        v["rss_flat"] = {"start_kb": s_sum, "end_kb": e_sum,
                         "rule": f"end <= start + {RSS_FLAT:.0%} (sum of master + workers, and each worker)",
                         "met": bool(s_sum and e_sum is not None and e_sum <= s_sum * (1 + RSS_FLAT)
                                     and per_worker_ok and len(workers) == WORKERS)}
        fd_ok = all(start[n]["fds"] is not None and end[n]["fds"] is not None and
                    end[n]["fds"] - start[n]["fds"] <= FDS_FLAT for n in names)
        v["fds_flat"] = {"start": {n: start[n]["fds"] for n in names}, "end": {n: end[n]["fds"] for n in names},
                         "rule": f"end <= start + {FDS_FLAT} in each process",
                         "met": fd_ok and len(workers) == WORKERS}
        probes = [self.res.get("slowloris", {}).get(f"probe_{n}") for n in ("http", "uwsgi")]
        if all(probes):
            v["slowloris_probe"] = {
                "rule": f">= {PROBE_ANSWERED:.0%} answered and p99 < {PROBE_P99_MS:g} ms, on both sockets",
                "met": all(p["answered"] >= PROBE_ANSWERED and p["p99_ms"] is not None and p["p99_ms"] < PROBE_P99_MS
                           for p in probes)}
        return v

    def _server_log(self) -> None:
        try:
            text = self.srv.log_path.read_text(errors="replace")
        except OSError:
            return
        lines = text.splitlines()
        counts = Counter()
        for line in lines:
            low = line.lower()
            if any(w in low for w in ("error", "invalid", "timeout", "closed", "died", "killed", "refus",
                                      "respawn", "traceback", "unavailable", "bad ")):
                counts[_shape(line)] += 1
        self.res["server_log"] = {"path": str(self.srv.log_path), "lines": len(lines), "bytes": len(text),
                                  "tracebacks": sum("Traceback (most recent call last)" in ln for ln in lines),
                                  "notable": dict(counts.most_common(25))}


def _r(v):
    return None if v is None else round(v, 2)


def _shape(line: str) -> str:
    """A log line with its numbers and addresses blanked, so that alike lines count together."""
    import re
    line = re.sub(r"\[[A-Z][a-z]{2} [A-Z][a-z]{2} .*?\d{4}\]", "[date]", line)
    line = re.sub(r"\d+\.\d+\.\d+\.\d+(:\d+)?", "ADDR", line)
    line = re.sub(r"\d+", "N", line)
    return line[:160]


def _stats_extract(stats: dict | None) -> dict | None:
    if not stats:
        return None
    keep = ("id", "pid", "requests", "exceptions", "respawn_count", "status", "rss", "pending_heads",
            "dropped_pending_heads", "harakiri_count", "signals", "avg_rt")
    return {"listen_queue": stats.get("listen_queue"), "listen_queue_errors": stats.get("listen_queue_errors"),
            "workers": [{k: w.get(k) for k in keep if k in w} for w in stats.get("workers", [])]}


# --- the table -------------------------------------------------------------------------------------

def _mb(kb) -> str:
    return "-" if kb is None else f"{kb / 1024:.1f}"


def _n(v) -> str:
    return "-" if v is None else f"{v:,}"


def _ms(v) -> str:
    return "-" if v is None else (f"{v:.1f}" if v < 100 else f"{v:,.0f}")


def rows_for(res: dict) -> dict[str, str]:
    """The table's cells of one side, by row name."""
    c: dict[str, str] = {}
    if res.get("error") and "requests" not in res:
        return {"_error": res["error"]}
    req = res["requests"]
    c["requests sent"] = f"{req['sent']:,} ({req['achieved_rate']:.0f}/s)"
    c["answered right"] = f"{req['ok']:,} ({req['ok'] / max(req['sent'], 1):.2%})"
    c["failed"] = _n(req["failed"])
    kw = req["failed_on_killed_worker_by_why"]
    c["  on the killed worker"] = _n(req["failed_on_killed_worker"]) + \
        (f" ({', '.join(f'{k} {v}' for k, v in sorted(kw.items()))})" if kw else "")
    c["  lost otherwise (target 0)"] = _n(req["failed_other"])
    ob = req["failed_other_by_why"]
    for why in ("timeout", "reset", "closed", "refused", "status", "body", "error"):
        c[f"    {why}"] = _n(ob.get(why, 0))
    c["    of them during slowloris"] = _n(req["failed_other_during_slowloris"])
    c["kept-alive conn. closed, sent again"] = f"{req['retried_stale_keepalive']} " \
        f"({req['retried_stale_on_killed_worker']} on the killed worker)"
    lat = req["latency_ms"]
    c["latency p50 / p99 / max ms"] = f"{_ms(lat['p50'])} / {_ms(lat['p99'])} / {_ms(lat['max'])}"
    q = req["latency_quiet_ms"]
    c["  the same, 0-25% and 75-100%"] = f"{_ms(q['p50'])} / {_ms(q['p99'])} / {_ms(q['max'])}"
    r = res.get("reload", {})
    c["SIGHUP: workers replaced in"] = "-" if r.get("replaced_after_s") is None else f"{r['replaced_after_s']:.2f} s"
    k = res.get("kill", {})
    c["SIGKILL: worker respawned in"] = "-" if k.get("replaced_after_s") is None else \
        f"{k['replaced_after_s']:.2f} s ({k.get('held_connections', 0)} conns held)"
    c["unexpected worker deaths"] = f"{len(res.get('unexpected_worker_deaths', []))}" + \
        ("" if res.get("master_alive", True) else " (MASTER DIED)")
    s = res.get("slowloris", {})
    c["slowloris conns / reopened"] = f"{s.get('connections', 0)} / {s.get('reopened_after_server_close', 0)}"
    for name, label in (("http", "probe --http-socket ans. / p99"), ("uwsgi", "probe --socket ans. / p99")):
        p = s.get(f"probe_{name}")
        c[label] = "-" if not p else f"{p['answered']:.1%} of {p['requests']} / " \
            f"{_ms(p['p99_ms']) + ' ms' if p['p99_ms'] is not None else '-'}"
    f = res.get("fuzz", {})
    sent = f.get("sent", {})
    c["fuzz inputs http / uwsgi"] = f"{sent.get('http', 0):,} / {sent.get('uwsgi', 0):,}"
    ans = Counter()
    for key, n in f.get("answers", {}).items():
        ans[key.split(" ", 1)[1]] += n
    groups = [("  answered 2xx/3xx", ("2xx", "3xx")), ("  answered 4xx", ("4xx",)), ("  answered 5xx", ("5xx",)),
              ("  closed / reset, no answer", ("closed", "reset")), ("  silent after half-close", ("no answer",)),
              ("  not an HTTP answer", ("other bytes",)), ("  connect timeout / refused", ("connect timeout", "refused")),
              ("  other", None)]
    seen = set()
    for label, keys in groups:
        if keys is None:
            n = sum(v for a, v in ans.items() if a not in seen)
        else:
            n = sum(ans.get(x, 0) for x in keys)
            seen.update(keys)
        c[label] = _n(n)
    fp = res["footprint"]
    st, en = fp["start"], fp["end"]
    names = sorted(st)
    workers = [n for n in names if n.startswith("worker")]

    def rss_sum(d):
        vals = [d[n]["rss_kb"] for n in d if d[n]["rss_kb"] is not None]
        return sum(vals) if vals else None

    c["RSS MB, master+workers start / end"] = f"{_mb(rss_sum(st))} / {_mb(rss_sum(en))}"
    c["  master start / end"] = f"{_mb(st['master']['rss_kb'])} / {_mb(en.get('master', {}).get('rss_kb'))}"
    c["  workers start / end"] = f"{' '.join(_mb(st[w]['rss_kb']) for w in workers)} / " \
        f"{' '.join(_mb(en[w]['rss_kb']) if w in en else '-' for w in workers)}"
    drift = fp.get("worker_rss_drift_last_quarter") or {}
    dw = [f"{_mb(v['rss_kb'][0])}->{_mb(v['rss_kb'][1])}" for kk, v in sorted(drift.items()) if kk.startswith("worker")]
    c["  workers 75% -> end"] = " ".join(dw) or "-"
    c["open fds master / workers start"] = f"{st['master']['fds']} / {' '.join(str(st[w]['fds']) for w in workers)}"
    c["open fds master / workers end"] = f"{en.get('master', {}).get('fds')} / " \
        f"{' '.join(str(en[w]['fds']) if w in en else '-' for w in workers)}"
    v = res["verdicts"]
    c["0 lost (besides the killed worker)"] = "met" if v["lost_outside_killed_worker"]["met"] else "MISSED <<<"
    growth = [(en[w]["rss_kb"] / st[w]["rss_kb"] - 1, w) for w in workers
              if w in en and en[w]["rss_kb"] and st[w]["rss_kb"]]
    worst = max(growth) if growth else None
    s_sum, e_sum = rss_sum(st), rss_sum(en)
    why = (f" (sum {e_sum / s_sum - 1:+.1%}" if s_sum and e_sum else " (") + \
        (f", {worst[1]} {worst[0]:+.1%})" if worst else ")")
    c[f"RSS flat (+{RSS_FLAT:.0%})"] = ("met" if v["rss_flat"]["met"] else "MISSED <<<") + why
    fd_growth = max((en[n]["fds"] - st[n]["fds"] for n in names if n in en and en[n]["fds"] is not None
                     and st[n]["fds"] is not None), default=None)
    c[f"fds flat (+{FDS_FLAT} per process)"] = ("met" if v["fds_flat"]["met"] else "MISSED <<<") + \
        ("" if fd_growth is None else f" (most: {fd_growth:+d})")
    sp = v.get("slowloris_probe")
    c[f"probe >= {PROBE_ANSWERED:.0%}, p99 < {PROBE_P99_MS:g} ms"] = "-" if sp is None else \
        ("met" if sp["met"] else "MISSED <<<")
    log = res.get("server_log", {})
    c["server log lines / tracebacks"] = f"{log.get('lines', '-')} / {log.get('tracebacks', '-')}"
    c["soak client CPU (of a core)"] = f"{res['client_cpu_share']:.0%}"
    if res.get("error"):
        c["_error"] = res["error"]
    return c


def table(doc: dict) -> str:
    labels = [side for side in SIDES if side in doc["sides"]]
    cells = {side: rows_for(doc["sides"][side]) for side in labels}
    order: list[str] = []
    for side in labels:
        for k in cells[side]:
            if k not in order and not k.startswith("_"):
                order.append(k)
    head = ("", *[SIDES[side] for side in labels])
    rows = [head] + [(k, *[cells[side].get(k, "-") for side in labels]) for k in order]
    if not order:
        rows.append(("(nothing measured)", *["-" for _ in labels]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    out = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    out.insert(1, "  ".join("-" * w for w in widths))
    for side in labels:
        if "_error" in cells[side]:
            out.append(f"{side}: {report.short(cells[side]['_error'], 300)}")
    return "\n".join(out)


def plan_line(a) -> str:
    D = a.duration
    return (f"soak: {D:g} s per side, {a.rate:g} req/s offered in {len(KINDS)} streams, fuzz {a.fuzz_rate:g} inputs/s; "
            f"SIGHUP at {AT_RELOAD * D:g}s, slowloris ({a.slowloris} conns) {AT_SLOW_START * D:g}-"
            f"{AT_SLOW_END * D:g}s, SIGKILL of a worker at {AT_KILL * D:g}s")


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    labels = args.only or list(SIDES)
    log_dir = Path(tempfile.mkdtemp(prefix="uwsgid-soak-"))
    current: list[Soak] = []

    def interrupted(*_):
        raise KeyboardInterrupt()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)
    started = dt.datetime.now(dt.timezone.utc)
    doc = {"date": started.isoformat(timespec="seconds"), "mode": "quick" if args.quick else "full",
           "args": {"duration_s": args.duration, "rate": args.rate, "fuzz_rate": args.fuzz_rate,
                    "slowloris": args.slowloris, "timeout_s": args.timeout, "seed": args.seed, "only": args.only},
           "plan": plan_line(args), "machine": machine.describe(), "logs": str(log_dir),
           "flat": {"rss": f"end <= start + {RSS_FLAT:.0%}", "fds": f"end <= start + {FDS_FLAT} per process"},
           "sides": {}}
    out_json = args.out / "soak-latest.json"
    print(plan_line(args), flush=True)
    print(f"soak: server logs in {log_dir}", flush=True)
    try:
        for label in labels:
            print(f"soak: {SIDES[label]}", flush=True)
            s = Soak(label, args, log_dir)
            current.append(s)
            doc["sides"][label] = s.run()
            if doc["sides"][label].get("error"):
                print(f"  {label}: {report.short(doc['sides'][label]['error'], 300)}", flush=True)
            report.write_json(out_json, doc)
    except KeyboardInterrupt:
        print("soak: interrupted; servers stopped, partial results kept", file=sys.stderr)
        doc["interrupted"] = True
        for s in current:
            if getattr(s, "srv", None) is not None:
                s.srv.stop()
    doc["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    doc["table"] = table(doc)
    report.write_json(out_json, doc)
    print()
    print(doc["table"])
    print(f"\nflat: RSS end <= start + {RSS_FLAT:.0%} (sum and each worker), fds end <= start + {FDS_FLAT} "
          f"per process; failures \"on the killed worker\" were in flight on a connection it held")
    print(f"results: {out_json}")
    return 130 if doc.get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())
