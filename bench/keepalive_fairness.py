"""Keep-alive fairness (issue 15): 2 sync workers, 16 keep-alive clients doing fast requests and one
client doing 1 s requests. With connections tied to the worker that accepted them, the fast
clients that landed on the slow request's worker wait behind it; their p99 shows it.

    .venv/bin/python bench/keepalive_fairness.py [ours|ours-router|uwsgi|uwsgi-router|gunicorn ...] [--seconds N] [--think MS]

Prints, per server: fast requests done, p50/p99/max latency of the fast requests, slow requests
done, and the server's CPU time per request (all its processes, from /proc).
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STALL = 0.5     # a fast request slower than this waited behind a slow one
APP = '''
import time
def application(env, start_response):
    if env["PATH_INFO"] == "/slow":
        time.sleep(1.0)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def commands(app: Path, port: int) -> dict:
    addr = f"127.0.0.1:{port}"
    return {
        "ours": [str(ROOT / "uwsgi"), "--master", "--processes", "2", "--http-socket", addr,
                 "--wsgi-file", str(app), "--disable-logging"],
        "ours-router": [str(ROOT / "uwsgi"), "--master", "--processes", "2", "--http", addr,
                        "--wsgi-file", str(app), "--disable-logging"],
        "uwsgi": ["/usr/bin/uwsgi", "--plugin", "python3,http", "--master", "--processes", "2", "--http-socket", addr,
                  "--http-keepalive", "--wsgi-file", str(app), "--disable-logging"],
        "uwsgi-router": ["/usr/bin/uwsgi", "--plugin", "python3,http", "--master", "--processes", "2", "--http", addr,
                         "--http-keepalive", "--wsgi-file", str(app), "--disable-logging"],
        "gunicorn": [str(ROOT / ".venv/bin/gunicorn"), "-k", "gthread", "--workers", "2", "--threads", "1",
                     "--keep-alive", "60", "-b", addr, "--chdir", str(app.parent), app.stem + ":application"],
    }


def tree_cpu(pid: int) -> float:
    """CPU seconds (user+sys) of pid and its descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                parts = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ppid = int(parts[1])
        children.setdefault(ppid, []).append(int(d))
        stats[int(d)] = (int(parts[11]) + int(parts[12])) / tick
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += stats.get(p, 0.0)
        todo += children.get(p, [])
    return total


def client(port: int, path: str, stop: float, out: list, think: float = 0.0) -> None:
    conn = None
    while time.monotonic() < stop:
        t0 = time.monotonic()
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            if resp.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException):
            # a closed idle keep-alive connection: retry the (idempotent) request on a new one,
            # as browsers and HTTP libraries do; the time spent counts in its latency
            if conn is not None:
                conn.close()
            conn = None
            continue
        out.append((t0, time.monotonic() - t0))
        if think:
            time.sleep(think)
    if conn is not None:
        conn.close()


def run(name: str, seconds: float, think: float) -> None:
    tmp = Path(tempfile.mkdtemp())
    app = tmp / "ka_app.py"
    app.write_text(APP)
    port = free_port()
    cmd = commands(app, port)[name]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{name}: not listening")
                time.sleep(0.1)
        time.sleep(1.0)
        cpu0 = tree_cpu(proc.pid)
        stop = time.monotonic() + seconds
        fast: list[list] = [[] for _ in range(16)]
        slow: list = []
        threads = [threading.Thread(target=client, args=(port, "/fast", stop, out, think)) for out in fast]
        threads.append(threading.Thread(target=client, args=(port, "/slow", stop, slow)))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        cpu = tree_cpu(proc.pid) - cpu0
        lat = sorted(d for out in fast for _, d in out)
        n = len(lat)
        pct = (lambda q: lat[min(n - 1, int(q * n))] * 1000) if n else (lambda q: float("nan"))
        # the fast clients' view: how many waited behind a slow request at least once, and the p99
        # of the worst half of the clients (those that shared a worker with /slow)
        stalled = sum(1 for out in fast if any(d > STALL for _, d in out) or not out)
        worst = sorted(fast, key=lambda out: -max((d for _, d in out), default=seconds))[:8]
        wl = sorted(d for out in worst for _, d in out)
        wp99 = wl[min(len(wl) - 1, int(0.99 * len(wl)))] * 1000 if wl else float("nan")
        print(f"{name:13} fast={n:6d} p50={pct(0.5):6.1f}ms p99={pct(0.99):7.1f}ms max={pct(1.0):7.1f}ms "
              f"stalled_clients={stalled:2d}/16 worst8_p99={wp99:7.1f}ms slow={len(slow)} "
              f"cpu/req={cpu / max(1, n + len(slow)) * 1e6:.0f}us load={os.getloadavg()[0]:.2f}", flush=True)
    finally:
        os.killpg(proc.pid, signal.SIGINT if name != "gunicorn" else signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("servers", nargs="*", default=["ours", "ours-router", "uwsgi", "uwsgi-router", "gunicorn"])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--think", type=float, default=0.0, help="ms a fast client waits between its requests")
    args = ap.parse_args()
    for name in args.servers:
        if name.startswith("uwsgi") and not os.path.exists("/usr/bin/uwsgi"):
            print(f"{name}: /usr/bin/uwsgi is absent, skipped", file=sys.stderr)
            continue
        run(name, args.seconds, args.think / 1000)


if __name__ == "__main__":
    main()
