"""What internal routing costs per request, in server CPU (issue 22):

    .venv/bin/python bench/routing_cost.py [--runs 5] [--duration 4] [--only ours|uwsgi] [--app wsgi|lua]

Each config runs hello.py (or pippo.lua) with 1 worker and --disable-logging; wrk (-t1 -c8,
keep-alive: ours keeps the connection, real uWSGI's --http-socket closes it) loads it; the figure
is user + system CPU of every server process (/proc, psutil) over the requests served, in µs.
The configs alternate run by run (none, nomatch, ...) so that the machine's load hits them alike;
each figure is the median of its runs. Configs:

    none       no route at all
    nomatch    a request chain whose three routes never match (a subject regexp, an -if and
               a -host route), nothing in the other chains
    addheader  one `--route-run addheader:...` (the cheap route of the issue's target)
    three      the bench's three routes (scenarios.ROUTES_THREE: force-HTTPS check that does not
               fire, addheader, a final-route log of slow requests that does not fire)

On uWSGI the same routes run with --plugins python3|lua51,router_redirect (Debian's build).

On two shared cores the end-to-end figure moves by tens of µs from run to run (other processes'
load), far more than a route costs; `--micro` measures the routing path alone, in this process:
a real net.request.Request (a connection that discards what is sent) goes through what the core
and the response framing call (Router.request; Request.respond as the WSGI plugin calls it, or
start_response, write and the head with State.before_head as the Lua plugin does; Router.done),
N times per config, process CPU time (time.process_time) over N, minus the same path without a
Router.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import load  # noqa: E402
from harness.scenarios import HELLO, LUA6, PIPPO, ROUTES_THREE  # noqa: E402
from harness.servers import OURS, PEER_UWSGI, Server, ServerSpec, free_port  # noqa: E402

CONFIGS = {
    "none": [],
    "nomatch": ["--route", "^/admin/ break:403", "--route-if", "equal:${HTTP_X_DEBUG};1 log:debug",
                "--route-host", "^old\\.example\\.com$ redirect-permanent:https://example.com${REQUEST_URI}"],
    "addheader": ["--route-run", "addheader:X-Content-Type-Options: nosniff"],
    "three": ROUTES_THREE,
}


def spec(side: str, app: str, routes: list[str]) -> ServerSpec:
    port = free_port()
    app_args = ["--wsgi-file", str(HELLO)] if app == "wsgi" else [*LUA6, "--lua", str(PIPPO)]
    common = ["--master", "--processes", "1", "--disable-logging", "--http-socket", f"127.0.0.1:{port}"]
    if side == "ours":
        argv = [str(OURS), *common, *app_args, *routes]
    else:
        plugin = "python3" if app == "wsgi" else "lua51"
        argv = [str(PEER_UWSGI), "--plugins", f"{plugin},router_redirect", *common, *app_args, *routes]
    return ServerSpec(side, argv, port)


def one_run(side: str, app: str, routes: list[str], duration: float, log_dir: Path) -> dict:
    with Server(spec(side, app, routes), log_dir) as srv:
        url = f"http://127.0.0.1:{srv.spec.port}/"
        load.run_wrk(url, 1, connections=8, threads=1)     # warm-up
        cpu0 = srv.cpu_seconds()
        r = load.run_wrk(url, duration, connections=8, threads=1)
        cpu = srv.cpu_seconds() - cpu0
    return {"requests": r["requests"], "rps": round(r["rps"]), "cpu_us_per_request": cpu * 1e6 / r["requests"],
            "loadavg": os.getloadavg()[0]}


class _NullConn:
    fd = -1
    closed = False
    is_http = True
    queue = None

    def worker_stopping(self) -> bool:
        return False

    def send(self, data) -> None:
        pass

    send_last = send

    def close(self) -> None:
        pass


def micro(configs: list[str], n: int, rounds: int) -> dict:
    """µs of CPU per request spent in the routing path, per config (the median of `rounds`)."""
    import time

    from uwsgid.config import cli
    from uwsgid.net.request import Request
    from uwsgid.routing import setup

    def opts_for(routes: list[str]):
        return cli.parse(["--http-socket", "127.0.0.1:0", *routes])

    vars_ = {b"REQUEST_METHOD": b"GET", b"PATH_INFO": b"/", b"REQUEST_URI": b"/", b"QUERY_STRING": b"",
             b"HTTP_HOST": b"127.0.0.1:8080", b"SERVER_PROTOCOL": b"HTTP/1.1", b"REMOTE_ADDR": b"127.0.0.1",
             b"HTTP_USER_AGENT": b"wrk"}
    conn = _NullConn()
    headers = [(b"Content-Type", b"text/html")]

    clock = time.monotonic

    body = [b"Hello World"]

    def path(router, respond: bool) -> float:
        t0 = time.process_time()
        for _ in range(n):
            req = Request(conn, dict(vars_), keepalive=True)
            req.start = clock()
            if router is not None and router.request(None, req):
                continue
            # the WSGI plugin's way (the whole body known: Request.respond, the C path when
            # built), else the Lua plugin's (start_response, write, the head at the final flush)
            if not (respond and req.respond(b"200 OK", headers, body)):
                req.start_response(b"200 OK", headers)
                req.write(body[0])
                req.flush(True)
            req.end = clock()
            if req.route is not None:
                router.done(req)
        return (time.process_time() - t0) * 1e6 / n

    routers = {name: setup(opts_for(CONFIGS[name])) for name in configs}
    out: dict = {}
    for way, respond in (("respond", True), ("flush", False)):
        samples: dict = {name: [] for name in configs}
        for _ in range(rounds):
            for name in configs:
                samples[name].append(path(routers[name], respond))
        med = {name: statistics.median(v) for name, v in samples.items()}
        base = med.get("none", 0.0)
        out[way] = {name: {"us_per_request": round(v, 3), "routing_us": round(v - base, 3)}
                    for name, v in med.items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--duration", type=float, default=4)
    ap.add_argument("--only", choices=["ours", "uwsgi"])
    ap.add_argument("--app", choices=["wsgi", "lua"], default="wsgi")
    ap.add_argument("--configs", nargs="*", default=list(CONFIGS))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--micro", action="store_true", help="the routing path alone, in this process")
    ap.add_argument("--requests", type=int, default=200_000, help="per config and round with --micro")
    a = ap.parse_args()
    if a.micro:
        sys.path[:0] = [str(OURS.parent), str(OURS.parent / "build" / "lib")]     # uwsgid, _uwsgi_native
        res = micro(a.configs, a.requests, a.runs)
        for way, figures in res.items():
            for name, r in figures.items():
                print(f"{way:7} {name:9} {r['us_per_request']:7.3f} µs CPU/request, routing {r['routing_us']:+.3f} µs")
        print(f"load average: {os.getloadavg()[0]:.1f}")
        if a.json:
            a.json.write_text(json.dumps({"micro": res, "requests": a.requests, "rounds": a.runs}, indent=1) + "\n")
        return
    sides = [a.only] if a.only else ["ours", "uwsgi"]
    out: dict = {"app": a.app, "loadavg_at_start": os.getloadavg(), "runs": {}}
    with tempfile.TemporaryDirectory(prefix="uwsgid-routing-cost-") as tmp:
        for i in range(a.runs):
            for side in sides:
                for name in a.configs:
                    r = one_run(side, a.app, CONFIGS[name], a.duration, Path(tmp))
                    out["runs"].setdefault(f"{side}/{name}", []).append(r)
                    print(f"run {i + 1} {side:5} {name:9} {r['cpu_us_per_request']:7.2f} µs/req "
                          f"{r['rps']:6} req/s load {r['loadavg']:.1f}", flush=True)
    print()
    med = {}
    for key, runs in out["runs"].items():
        med[key] = statistics.median(r["cpu_us_per_request"] for r in runs)
    out["median_cpu_us_per_request"] = med
    out["loadavg_at_end"] = os.getloadavg()
    for side in sides:
        base = med.get(f"{side}/none")
        for name in a.configs:
            v = med[f"{side}/{name}"]
            extra = f"  (+{v - base:.2f} vs none)" if base and name != "none" else ""
            print(f"{side:5} {name:9} {v:7.2f} µs CPU/request{extra}")
    print(f"load average: start {out['loadavg_at_start'][0]:.1f}, end {out['loadavg_at_end'][0]:.1f}")
    if a.json:
        a.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
