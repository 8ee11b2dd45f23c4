"""Load generators: wrk for raw throughput, locust (headless) for paced and user-level load.

Both return plain dicts of figures so that run.py can store every run in latest.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
WRK_SUMMARY = BENCH / "wrk" / "summary.lua"
LOCUSTFILE = BENCH / "locustfile.py"


class LoadError(RuntimeError):
    pass


def wrk_command(url: str, duration: float, connections: int = 32, threads: int = 2,
                headers: dict[str, str] | None = None) -> list[str]:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s",
           "--timeout", "10s", "-s", str(WRK_SUMMARY)]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    return cmd + [url]


def run_wrk(url: str, duration: float, connections: int = 32, threads: int = 2,
            headers: dict[str, str] | None = None) -> dict:
    cmd = wrk_command(url, duration, connections, threads, headers)
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    except subprocess.TimeoutExpired:
        raise LoadError(f"wrk did not finish: {' '.join(cmd)}")
    line = next((l for l in out.stdout.splitlines() if l.startswith("BENCHJSON ")), None)
    if out.returncode != 0 or line is None:
        raise LoadError(f"wrk failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()[-300:]}")
    r = json.loads(line[len("BENCHJSON "):])
    secs = r["duration_us"] / 1e6
    r["rps"] = r["requests"] / secs if secs > 0 else 0.0
    r["bytes_per_request"] = r["bytes"] / r["requests"] if r["requests"] else 0
    return r


def wrk_problem(r: dict, duration: float | None = None) -> str | None:
    """Why a wrk run cannot be trusted, or None.

    A read error is not counted: wrk records one for every response framed by the server
    closing the connection (real uWSGI's --http-socket sends no Content-Length).
    A run that lasted much longer than asked had connections stalled (SYNs dropped and
    retried after 1 s, 3 s...): on this shared machine that is outside noise, not a figure.
    """
    if r["requests"] == 0:
        return "no request completed"
    secs = r["duration_us"] / 1e6
    if duration and secs > 1.5 * max(1, round(duration)) + 1:
        return f"the {max(1, round(duration))} s run took {secs:.1f} s: connections stalled"
    e = r["errors"]
    if e["status"] > 0.01 * r["requests"]:
        return f"{e['status']} non-2xx/3xx answers out of {r['requests']}"
    if e["connect"] + e["timeout"] + e["write"] > 0.01 * r["requests"] + 5:
        return f"socket errors: connect {e['connect']}, write {e['write']}, timeout {e['timeout']}"
    return None


PACED = Path(__file__).resolve().parent / "paced.py"


def paced_command(host: str, port: int, path: str, rate: float, duration: float) -> list[str]:
    import sys
    return [sys.executable, str(PACED), host, str(port), path, f"{rate:g}", f"{duration:g}"]


def run_paced(host: str, port: int, path: str, rate: float, duration: float) -> dict:
    """The open-loop client (harness/paced.py) in its own process, so the harness does not disturb it."""
    cmd = paced_command(host, port, path, rate, duration)
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    except subprocess.TimeoutExpired:
        raise LoadError(f"paced client did not finish: {' '.join(cmd)}")
    line = next((l for l in out.stdout.splitlines() if l.startswith("BENCHJSON ")), None)
    if out.returncode != 0 or line is None:
        raise LoadError(f"paced client failed ({out.returncode}): {out.stderr.strip()[-400:]}")
    return json.loads(line[len("BENCHJSON "):])


def paced_problem(r: dict) -> str | None:
    if r["requests"] == 0:
        return "no request completed"
    bad = sum(r["errors"].values())
    if bad > 0.01 * (r["requests"] + bad):
        return f"{bad} failed requests ({r['errors']}) out of {r['requests'] + bad}"
    if r["rps"] < 0.9 * r["offered_rps"]:
        return f"offered {r['offered_rps']:.0f} req/s, served {r['rps']:.0f}"
    return None


def locust_command(host: str, user_class: str, users: int, duration: float) -> list[str]:
    return [str(BENCH.parent / ".venv" / "bin" / "locust"), "-f", str(LOCUSTFILE), user_class,
            "--headless", "-u", str(users), "-r", str(users), "-t", f"{max(1, round(duration))}s",
            "--host", host, "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "2"]


def run_locust(host: str, user_class: str, users: int, duration: float,
               env: dict[str, str] | None = None) -> dict:
    """Headless locust; the locustfile writes exact per-request latencies' percentiles to a JSON file
    (locust's own percentiles are rounded to whole milliseconds, too coarse at these latencies)."""
    with tempfile.TemporaryDirectory(prefix="bench-locust-") as tmp:
        out_json = Path(tmp) / "figures.json"
        cmd = locust_command(host, user_class, users, duration)
        env = dict(os.environ, **(env or {}), BENCH_LOCUST_OUT=str(out_json))
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 90, env=env,
                                 cwd=BENCH)
        except subprocess.TimeoutExpired:
            raise LoadError(f"locust did not finish: {' '.join(cmd)}")
        if not out_json.exists():
            raise LoadError(f"locust failed ({out.returncode}): {(out.stderr or out.stdout).strip()[-400:]}")
        r = json.loads(out_json.read_text())
    r["command"] = " ".join(cmd)
    return r


def locust_problem(r: dict) -> str | None:
    if r["requests"] == 0:
        return "no request completed"
    if r["failures"] > 0.01 * r["requests"]:
        return f"{r['failures']} failed requests out of {r['requests']}: {r.get('failure_sample', '')}"
    return None


# --- scripted clients (ws-echo, chunk-delay): each in its own process, one JSON line back ---------
WSLOAD = Path(__file__).resolve().parent / "wsload.py"
CHUNKLOAD = Path(__file__).resolve().parent / "chunkload.py"


def client_command(script: Path, port: int | str, path: str, duration: float | str, *extra) -> list[str]:
    import sys
    seconds = f"{duration:g}" if isinstance(duration, (int, float)) else duration   # or "SECONDS"
    return [sys.executable, str(script), "127.0.0.1", str(port), path, seconds, *map(str, extra)]


def run_client(script: Path, port: int, path: str, duration: float, *extra) -> dict:
    cmd = client_command(script, port, path, duration, *extra)
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    except subprocess.TimeoutExpired:
        raise LoadError(f"client did not finish: {' '.join(cmd)}")
    line = next((l for l in out.stdout.splitlines() if l.startswith("BENCHJSON ")), None)
    if out.returncode != 0 or line is None:
        raise LoadError(f"client failed ({out.returncode}): {out.stderr.strip()[-400:]}")
    return json.loads(line[len("BENCHJSON "):])


def ws_problem(r: dict) -> str | None:
    if r["messages"] == 0:
        return f"no echo received: {r['errors']} {r.get('error_sample') or ''}"
    bad = sum(r["errors"].values())
    if bad:
        return f"errors {r['errors']}: {r.get('error_sample')}"
    return None


def chunk_problem(r: dict) -> str | None:
    if r["chunks"] == 0:
        return f"no chunk received: {r['errors']} {r.get('error_sample') or ''}"
    bad = sum(r["errors"].values())
    if bad:
        return f"errors {r['errors']}: {r.get('error_sample')}"
    return None
