#!/usr/bin/env python3
"""Start-up time, side by side: this server (./uwsgi) against real uWSGI 2.0 (Debian's uwsgi-core).

    bench/startup.py [--runs N] [--quick] [--only version wsgi lua] [--json FILE]

Three cases, each the median of N runs per side, the runs alternating ours, peer, ours, peer...:
  version  `uwsgi --version`: from the launch to the exit;
  wsgi     examples/hello.py: `--http-socket 127.0.0.1:PORT --wsgi-file examples/hello.py` (the
           README's quick start: one process, no master), from the launch to the end of the first
           200 answer (the client retries connecting every 0.5 ms until the port takes it);
  lua      examples/pippo.lua, `--http-socket-modifier1 6 --lua examples/pippo.lua`, the same.
The peer runs the same command with `--plugin python3` / `--plugin lua51`. Every server is
stopped by its PID (SIGINT, then its process group is killed). A side that cannot run (./uwsgi
not built, /usr/bin/uwsgi or its plugin missing) is reported as SKIP with what is missing.
Targets (ours): `--version` within 50 ms, launch to first response within 3 times uWSGI's.
The table also gives the CPU time each side used until then (steadier than the wall clock on a
busy machine): the process's rusage for --version, /proc/PID/task/*/schedstat for a server.

Also run by `bench/run.py` (scenarios startup-version, startup-wsgi, startup-lua). Exit status 0
whenever it ran, whatever the verdicts.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OURS = ROOT / "uwsgi"
PEER = Path("/usr/bin/uwsgi")
PEER_PLUGINS = Path("/usr/lib/uwsgi/plugins")
HELLO = ROOT / "examples" / "hello.py"
PIPPO = ROOT / "examples" / "pippo.lua"
VERSION_TARGET_MS = 50.0
LAUNCH_TARGET = 3.0          # ours / uWSGI
POLL_S = 0.0005


class StartupError(RuntimeError):
    pass


class Case:
    def __init__(self, id_, title, ours, peer, peer_plugin, expect=None, target_op="<=", target=None,
                 needs=()):
        self.id, self.title = id_, title
        self.ours, self.peer = ours, peer        # port -> argv (version: port ignored)
        self.peer_plugin, self.expect = peer_plugin, expect
        self.target_op, self.target = target_op, target
        self.needs = list(needs)

    @property
    def launch(self) -> bool:
        return self.expect is not None


CASES = [
    Case("startup-version", "`uwsgi --version`: launch to exit",
         lambda _: [str(OURS), "--version"], lambda _: [str(PEER), "--version"], None),
    Case("startup-wsgi", "hello.py, --http-socket, one process: launch to first response",
         lambda p: [str(OURS), "--http-socket", f"127.0.0.1:{p}", "--wsgi-file", str(HELLO)],
         lambda p: [str(PEER), "--plugin", "python3", "--http-socket", f"127.0.0.1:{p}",
                    "--wsgi-file", str(HELLO)],
         "python3", expect=b"Hello World", target=LAUNCH_TARGET, needs=[HELLO]),
    Case("startup-lua", "pippo.lua, --http-socket, one process: launch to first response",
         lambda p: [str(OURS), "--http-socket", f"127.0.0.1:{p}", "--http-socket-modifier1", "6",
                    "--lua", str(PIPPO)],
         lambda p: [str(PEER), "--plugin", "lua51", "--http-socket", f"127.0.0.1:{p}",
                    "--http-socket-modifier1", "6", "--lua", str(PIPPO)],
         "lua51", expect=b"Hello Wsapi", target=LAUNCH_TARGET, needs=[PIPPO]),
]
BY_ID = {c.id: c for c in CASES}
IDS = [c.id for c in CASES]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ours_missing() -> str | None:
    if not OURS.exists():
        return "missing: ./uwsgi (build it with `make build`)"
    if not os.access(OURS, os.X_OK):
        return "missing: ./uwsgi is not executable"
    return None


def peer_missing(plugin: str | None) -> str | None:
    if not PEER.exists():
        return "missing: /usr/bin/uwsgi (apt-get install uwsgi-core; `make bench` does it)"
    if plugin and not (PEER_PLUGINS / f"{plugin}_plugin.so").exists():
        pkg = {"lua51": "uwsgi-plugin-lua5.1", "python3": "uwsgi-plugin-python3"}.get(plugin, plugin)
        return f"missing: uWSGI plugin {plugin} (apt-get install {pkg})"
    return None


# --- one measurement --------------------------------------------------------------------------

def time_version(argv: list[str]) -> tuple[float, float]:
    """(wall, CPU) milliseconds from the launch to the exit of `argv` (which must print a version)."""
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        ms = (time.perf_counter() - t0) * 1000
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    if proc.returncode != 0 or not text.strip():
        raise StartupError(f"exit {proc.returncode}: {text[-300:]}")
    return ms, (usage.ru_utime + usage.ru_stime) * 1000


def cpu_ms(pid: int) -> float | None:
    """CPU time a running process has used so far (every thread's), from /proc (Linux); None
    elsewhere. Steadier than the wall clock on a busy machine."""
    try:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e6
    except (OSError, ValueError, IndexError):
        return None


def _get(port: int) -> bytes | None:
    """One GET on a new connection; the whole answer, or None when the port refuses."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
    except (ConnectionRefusedError, ConnectionResetError):
        return None
    with s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
        return data


def _stop(proc: subprocess.Popen) -> None:
    """By its PID (SIGINT: a uWSGI 2.0 master reloads on SIGTERM), then its session's group."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGINT)
            proc.wait(5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass


def time_launch(argv: list[str], port: int, expect: bytes, log_path: Path,
                timeout: float = 30.0) -> tuple[float, float | None]:
    """(wall, CPU) milliseconds from the launch of the server to the end of its first answer (a
    200 with `expect` in it); CPU is the server process's (one process here, no master). The
    server is stopped before returning."""
    with open(log_path, "wb") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=ROOT, start_new_session=True)
        try:
            deadline = t0 + timeout
            while True:
                answer = _get(port)
                if answer is not None:
                    ms = (time.perf_counter() - t0) * 1000
                    cpu = cpu_ms(proc.pid)
                    break
                if proc.poll() is not None:
                    raise StartupError(f"exited with {proc.returncode}: {_tail(log_path)}")
                if time.perf_counter() > deadline:
                    raise StartupError(f"no answer on port {port} after {timeout:.0f} s: {_tail(log_path)}")
                time.sleep(POLL_S)
        finally:
            _stop(proc)
    head = answer.split(b"\r\n", 1)[0]
    if b" 200" not in head or expect not in answer:
        raise StartupError(f"first answer was {answer[:160]!r}: {_tail(log_path)}")
    return ms, cpu


def _tail(path: Path, lines: int = 6) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


# --- a case: N runs per side, alternating -------------------------------------------------------

def measure(case: Case, runs: int, log_dir: Path) -> dict:
    """The case's result in bench/run.py's form (id, sides with runs and medians, ratio, status)."""
    res = {"id": case.id, "title": case.title, "peer_name": "uWSGI" + (f" {case.peer_plugin}" if case.peer_plugin else ""),
           "kind": "startup", "metric": "start_ms", "unit": "ms", "target_op": case.target_op,
           "target": case.target, "status": None, "reason": "", "ratio": None, "note": "",
           "ours": {"command": None, "runs": [], "cpu_ms": [], "median": None, "cpu_median": None, "error": None},
           "peer": {"command": None, "runs": [], "cpu_ms": [], "median": None, "cpu_median": None, "error": None}}
    missing = [f"missing: {p.relative_to(ROOT)}" for p in case.needs if not p.exists()]
    sides = {"ours": (case.ours, ours_missing()), "peer": (case.peer, peer_missing(case.peer_plugin))}
    for label, (_, why) in sides.items():
        res[label]["error"] = "; ".join(missing) or why
    for _ in range(runs):
        for label, (make, _) in sides.items():
            side = res[label]
            if side["error"]:
                continue
            port = free_port()
            argv = make(port)
            side["command"] = " ".join(argv).replace(str(port), "PORT")
            try:
                if case.launch:
                    ms, cpu = time_launch(argv, port, case.expect, log_dir / f"{case.id}-{label}.log")
                else:
                    ms, cpu = time_version(argv)
                side["runs"].append(ms)
                if cpu is not None:
                    side["cpu_ms"].append(cpu)
            except (StartupError, OSError, subprocess.TimeoutExpired) as exc:
                side["error"] = str(exc)
    for label in ("ours", "peer"):
        side = res[label]
        if side["runs"] and not side["error"]:
            side["median"] = statistics.median(side["runs"])
            if side["cpu_ms"]:
                side["cpu_median"] = statistics.median(side["cpu_ms"])
    o, p = res["ours"]["median"], res["peer"]["median"]
    if o is not None and p:
        res["ratio"] = o / p
    why = [f"{label}: {res[label]['error']}" for label in ("ours", "peer") if res[label]["error"]]
    res["reason"] = " | ".join(why)
    if case.target is None:
        # --version's target is an absolute one (ours within 50 ms), not a ratio
        if o is not None:
            res["note"] = f"target: ours <= {VERSION_TARGET_MS:.0f} ms ({'met' if o <= VERSION_TARGET_MS else 'MISSED'})"
            res["reason"] = "; ".join(filter(None, [res["reason"], res["note"]]))
        res["status"] = "info" if res["ratio"] is not None else None
    elif res["ratio"] is not None:
        res["status"] = "pass" if res["ratio"] <= case.target else "miss"
    if res["status"] is None:
        res["status"] = "skip" if any((res[l]["error"] or "").startswith("missing:") for l in ("ours", "peer")) \
            else "error"
    return res


def default_runs(quick: bool) -> int:
    return 3 if quick else 11


def run(ids: list[str] | None = None, runs: int = 11, log_dir: Path | None = None, progress=None) -> list[dict]:
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="uwsgid-startup-"))
    out = []
    for case in CASES:
        if ids and case.id not in ids:
            continue
        res = measure(case, runs, log_dir)
        out.append(res)
        if progress:
            progress(res)
    return out


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def table(results: list[dict]) -> str:
    rows = [("case", "ours ms", "uWSGI ms", "ours/uWSGI", "target", "verdict", "CPU ms ours/uWSGI")]
    for r in results:
        if r["target"] is None:
            target = f"ours <= {VERSION_TARGET_MS:.0f} ms"
            o = r["ours"]["median"]
            verdict = "-" if o is None else ("PASS" if o <= VERSION_TARGET_MS else "MISS <<<")
        else:
            target = f"{r['target_op']} {r['target']:g}x"
            verdict = {"pass": "PASS", "miss": "MISS <<<", "skip": "SKIP", "error": "ERROR <<<"}.get(r["status"], "-")
        cpu = "/".join(_fmt(r[label]["cpu_median"]) for label in ("ours", "peer"))
        rows.append((r["id"].removeprefix("startup-"), _fmt(r["ours"]["median"]), _fmt(r["peer"]["median"]),
                     "-" if r["ratio"] is None else f"{r['ratio']:.2f}", target, verdict, cpu))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    errors = [f"  {r['id']}: {r['ours']['error'] or ''} {r['peer']['error'] or ''}".rstrip()
              for r in results if r["ours"]["error"] or r["peer"]["error"]]
    if errors:
        lines += ["", "not measured:"] + errors
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench/startup.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, help="runs per side and case (default 11, quick 3)")
    p.add_argument("--quick", action="store_true", help="3 runs per side (smoke mode)")
    p.add_argument("--only", nargs="+", choices=[c.id.removeprefix("startup-") for c in CASES],
                   help="run only these cases")
    p.add_argument("--json", type=Path, help="also write every run's figures to this file")
    a = p.parse_args(argv)
    runs = a.runs or default_runs(a.quick)
    if runs < 1:
        p.error("--runs must be >= 1")
    ids = [f"startup-{c}" for c in a.only] if a.only else None
    print(f"start-up: median of {runs} run(s) per side, alternating ours/uWSGI "
          f"({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f})", flush=True)
    results = run(ids, runs)
    print(table(results))
    if a.json:
        a.json.write_text(json.dumps({"runs": runs, "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
