"""Records how Debian's uWSGI (/usr/bin/uwsgi --plugin python3 plus the
plugins a pip-installed uWSGI has built in) runs each config of this corpus,
rewritten by realconfigs.py exactly as the test rewrites it for ./uwsgi, into uwsgi-reference.json:
per file, did it start, was a request served, the HTTP status, the exit code, and the log lines
that name an option it did not take.

    .venv/bin/python tests/data/real-configs/record_reference.py [--binary /usr/bin/uwsgi] [FILE...]
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import realconfigs as harness  # noqa: E402  (not "harness": bench/harness is a package on the path)

OUT = harness.HERE / "uwsgi-reference.json"
PLUGIN_DIR = Path("/usr/lib/uwsgi/plugins")
# What a pip-installed uWSGI has built in (buildconf/base.ini's embedded_plugins): Debian ships
# them as plugins, so the reference loads the ones it has, as a user's `pip install uwsgi` would.
EMBEDDED = ("ping cache nagios rrdtool carbon rpc corerouter fastrouter http ugreen signal syslog rsyslog "
            "logsocket router_uwsgi router_redirect router_basicauth zergpool redislog mongodblog "
            "router_rewrite router_http logfile router_cache rawrouter router_static sslrouter spooler "
            "cheaper_busyness symcall transformation_tofile transformation_gzip transformation_chunked "
            "transformation_offload router_memcached router_redis router_hash router_expires router_metrics "
            "transformation_template stats_pusher_socket router_fcgi").split()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="/usr/bin/uwsgi")
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("files", nargs="*")
    args = ap.parse_args()
    files = [harness.HERE / f for f in args.files] if args.files else harness.configs()
    plugins = ["python3"] + [p for p in EMBEDDED if (PLUGIN_DIR / f"{p}_plugin.so").exists()]
    binary = [args.binary, "--plugin", ",".join(plugins)]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda p: harness.run(p, binary), files))
    record = json.loads(OUT.read_text()) if OUT.exists() and args.files else {}
    for r in results:
        record[r.name] = {**r.summary(), "issues": harness.issues(r.log, harness.HERE / r.name)}
        print(f"{r.name}: started={r.started} served={r.served} status={r.status}", file=sys.stderr)
    OUT.write_text(json.dumps(dict(sorted(record.items())), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
