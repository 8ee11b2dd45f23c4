#!/usr/bin/env python3
"""Profile our hot path under a bench scenario's load with py-spy (pip install py-spy).

    bench/profile.py lua-close [--duration 5] [--native] [--top 25] [--out DIR]

Starts our server as the scenario does, loads it with the scenario's wrk command, samples every
worker with `py-spy record --subprocesses --format raw`, then prints the frames with the most
samples on top of the stack (self) and anywhere in it (inclusive). The raw stacks stay in DIR
(default bench/results/profile-SCENARIO.txt) for a flame graph (e.g. speedscope, flamegraph.pl).
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import load, servers  # noqa: E402
from harness.scenarios import BY_ID  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def summarize(raw: str, top: int) -> str:
    self_n: collections.Counter = collections.Counter()
    incl_n: collections.Counter = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if f and not f.startswith("process ")]
        if not frames:
            continue
        total += n
        self_n[frames[-1]] += n
        for f in set(frames):
            incl_n[f] += n
    if not total:
        return "no samples (is py-spy allowed to ptrace? are the workers Python?)"
    out = [f"{total} samples", "", f"top {top} self (the frame on top of the stack):"]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in self_n.most_common(top)]
    out += ["", f"top {top} inclusive (the frame anywhere in the stack):"]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in incl_n.most_common(top)]
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench/profile.py", description=__doc__.split("\n\n")[0])
    wrk_ids = [s.id for s in BY_ID.values() if s.kind in ("wrk", "rss")]
    p.add_argument("scenario", choices=wrk_ids)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--native", action="store_true", help="include C frames (py-spy --native)")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args(argv)
    spy = shutil.which("py-spy") or str(servers.VENV_BIN / "py-spy")
    if not Path(spy).exists():
        print("missing: py-spy (.venv/bin/pip install py-spy)", file=sys.stderr)
        return 1
    why = servers.ours_available()  # noqa
    if why:
        print(why, file=sys.stderr)
        return 1
    sc = BY_ID[a.scenario]
    import run  # the harness's own start-up: same commands, same nginx, same preflight
    bench = run.Bench(run.parse_args(["--quick"]))
    raw_path = a.out / f"profile-{sc.id}.txt"
    a.out.mkdir(parents=True, exist_ok=True)
    res = {"ours": {"error": None, "command": None}, "load": {}}
    try:
        ready = bench._start_sides(sc, {"ours": sc.ours}, res)
        if "ours" not in ready:
            print(f"ours did not start: {res['ours']['error']}", file=sys.stderr)
            return 1
        srv, url = ready["ours"]
        load.run_wrk(url, 1, sc.connections, 2, sc.headers)  # warm-up
        wrk = subprocess.Popen(load.wrk_command(url, a.duration + 2, sc.connections, 2, sc.headers),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(0.5)
        cmd = [spy, "record", "--pid", str(srv.pid), "--subprocesses", "--format", "raw", "--rate", "250",
               "--duration", str(max(1, round(a.duration))), "--nonblocking", "-o", str(raw_path)]
        if a.native:
            cmd.append("--native")
        rec = subprocess.run(cmd, capture_output=True, text=True, timeout=a.duration + 60)
        out, _ = wrk.communicate(timeout=a.duration + 60)
        line = next((l for l in out.splitlines() if l.startswith("BENCHJSON ")), "")
        print(f"server: {res['ours']['command']}\nload: {' '.join(load.wrk_command(url, a.duration, sc.connections, 2, sc.headers))}")
        if line:
            r = json.loads(line[len("BENCHJSON "):])
            print(f"load while sampled: {r['requests'] / (r['duration_us'] / 1e6):,.0f} req/s (py-spy slows it)")
        if rec.returncode != 0 or not raw_path.exists():
            print(f"py-spy failed: {(rec.stderr or rec.stdout).strip()[-500:]}", file=sys.stderr)
            return 1
        print(summarize(raw_path.read_text(), a.top))
        print(f"\nraw stacks: {raw_path}")
        return 0
    finally:
        bench.stop_all()


if __name__ == "__main__":
    sys.exit(main())
