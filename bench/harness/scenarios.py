"""The scenarios of issue 7: what each side runs, how it is loaded, and the target ratio ours/peer.

Both sides get the same app file, the same number of workers (and threads/async cores), the same
logging setting (--disable-logging on both; gunicorn and nginx log no access lines by default /
by config) and the same client. Only the server differs.
"""

from __future__ import annotations

import signal
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .servers import (OURS, PEER_UWSGI, ROOT, VENV_BIN, ServerSpec, binary_missing,
                      peer_plugin_missing)

EX = ROOT / "examples"
APPS = ROOT / "bench" / "apps"
CLOSE = {"Connection": "close"}


def ours(port: int, *extra, sock: str = "--http-socket", workers: int = 2, label: str = "ours",
         **spec) -> ServerSpec:
    argv = [str(OURS), "--master", "--processes", str(workers), "--disable-logging",
            sock, f"127.0.0.1:{port}", *map(str, extra)]
    return ServerSpec(label, argv, port, signal.SIGINT, http_ready=(sock == "--http-socket"), **spec)


def uwsgi_peer(port: int, plugins: str, *extra, sock: str = "--http-socket", workers: int = 2,
               **spec) -> ServerSpec:
    argv = [str(PEER_UWSGI), "--plugin", plugins, "--master", "--processes", str(workers),
            "--disable-logging", sock, f"127.0.0.1:{port}", *map(str, extra)]
    # SIGINT: a uWSGI 2.0 master reloads on SIGTERM.
    return ServerSpec("uwsgi", argv, port, signal.SIGINT, http_ready=(sock == "--http-socket"), **spec)


def gunicorn_peer(port: int, module: str, chdir: Path, workers: int = 2) -> ServerSpec:
    # No --access-logfile: gunicorn logs no request lines, like --disable-logging.
    argv = [str(VENV_BIN / "gunicorn"), "--workers", str(workers), "--worker-class", "sync",
            "--bind", f"127.0.0.1:{port}", "--chdir", str(chdir), module]
    return ServerSpec("gunicorn", argv, port, signal.SIGINT)


@dataclass
class Scenario:
    id: str
    title: str
    peer_name: str
    kind: str                         # wrk | rss | paced | locust
    metric: str                       # rps | rss_mb | p99_ms
    target_op: str                    # ">=" (more is better) or "<=" (less is better)
    target: float | None
    needs: list[Path]                 # files both sides need (shared examples, bench apps)
    ours: Callable[[int], ServerSpec]
    peer: Callable[[int], ServerSpec] | None
    peer_missing: Callable[[], str | None] = lambda: None
    path: str = "/"
    headers: dict[str, str] = field(default_factory=dict)
    connections: int = 32
    nginx_modifier1: int | None = None   # load goes through nginx -> uwsgi_pass with this modifier1
    expect: bytes | None = None          # the preflight answer must contain this
    locust_user: str = ""
    locust_users: int = 0
    locust_env: dict[str, str] = field(default_factory=dict)
    note: str = ""

    @property
    def unit(self) -> str:
        return {"rps": "req/s", "rss_mb": "MB", "p99_ms": "ms"}[self.metric]


def sputnik_env(label: str) -> dict[str, str]:
    """Each side its own Sputnik database (examples/sputnik.ws reads $SPUTNIK_DIR), kept between
    runs so both sides serve the same, already created wiki."""
    d = Path(tempfile.gettempdir()) / f"uwsgid-bench-sputnik-{label}"
    d.mkdir(exist_ok=True)
    return {"SPUTNIK_DIR": str(d)}


def lua51() -> str | None:
    return peer_plugin_missing("lua51")


def python3() -> str | None:
    return peer_plugin_missing("python3")


def gunicorn_missing() -> str | None:
    return binary_missing(VENV_BIN / "gunicorn", "pip install gunicorn; `make bench` does it")


def both_plugins() -> str | None:
    return lua51() or python3()


PIPPO = EX / "pippo.lua"
PIPPO_CPU = EX / "pippo_cpu.lua"
HELLO = EX / "hello.py"
STREAM = EX / "stream.py"
SPUTNIK = EX / "sputnik.ws"
SHOP = APPS / "shop.py"
SLEEP = APPS / "sleep.lua"
LUA6 = ("--http-socket-modifier1", "6")
PACED_RATE = 2000   # req/s offered in p99-paced: ~15% of real uWSGI's pippo throughput here

SCENARIOS: list[Scenario] = [
    Scenario("lua-close", "Lua pippo.lua, --http-socket, 2 workers, new connection per request",
             "uWSGI lua51", "wrk", "rps", ">=", 1.3, [PIPPO],
             lambda p: ours(p, *LUA6, "--lua", PIPPO),
             lambda p: uwsgi_peer(p, "lua51", *LUA6, "--lua", PIPPO), lua51,
             headers=CLOSE, expect=b"Hello Wsapi"),
    Scenario("lua-keepalive", "Lua pippo.lua, HTTP/1.1 keep-alive (the peer closes every connection)",
             "uWSGI lua51", "wrk", "rps", ">=", 3.0, [PIPPO],
             lambda p: ours(p, *LUA6, "--lua", PIPPO),
             lambda p: uwsgi_peer(p, "lua51", *LUA6, "--lua", PIPPO), lua51,
             expect=b"Hello Wsapi",
             note="same client on both sides (keep-alive requested); real uWSGI's --http-socket closes"),
    Scenario("lua-cpu", "Lua pippo_cpu.lua (10001 yields), --async 8, new connection per request",
             "uWSGI lua51", "wrk", "rps", ">=", 5.0, [PIPPO_CPU],
             lambda p: ours(p, *LUA6, "--async", 8, "--lua", PIPPO_CPU),
             lambda p: uwsgi_peer(p, "lua51", *LUA6, "--async", 8, "--lua", PIPPO_CPU), lua51,
             headers=CLOSE, expect=b"10000<br/>",
             note="--async 8 on both sides, as in uWSGI's docs for this app"),
    Scenario("wsgi-hello", "WSGI hello.py, --http-socket, 2 workers, new connection per request",
             "uWSGI python3", "wrk", "rps", ">=", 1.3, [HELLO],
             lambda p: ours(p, "--wsgi-file", HELLO),
             lambda p: uwsgi_peer(p, "python3", "--wsgi-file", HELLO), python3, headers=CLOSE),
    Scenario("wsgi-gunicorn", "WSGI hello.py, 2 workers, new connection per request",
             "gunicorn 2 sync", "wrk", "rps", ">=", 2.5, [HELLO],
             lambda p: ours(p, "--wsgi-file", HELLO),
             lambda p: gunicorn_peer(p, "hello:application", EX), gunicorn_missing, headers=CLOSE,
             note="gunicorn's sync workers close every connection; the client asks for close on both"),
    Scenario("wsgi-stream", "WSGI stream.py (10001 chunks), --http-socket, 2 workers",
             "uWSGI python3", "wrk", "rps", ">=", 3.0, [STREAM],
             lambda p: ours(p, "--wsgi-file", STREAM),
             lambda p: uwsgi_peer(p, "python3", "--wsgi-file", STREAM), python3, headers=CLOSE),
    Scenario("nginx-lua", "nginx -> uwsgi_pass, modifier1 6, pippo.lua, 2 workers",
             "uWSGI lua51", "wrk", "rps", ">=", 1.2, [PIPPO],
             lambda p: ours(p, "--lua", PIPPO, sock="--socket"),
             lambda p: uwsgi_peer(p, "lua51", "--lua", PIPPO, sock="--socket"), lua51,
             nginx_modifier1=6, expect=b"Hello Wsapi",
             note="one nginx (1 worker, keep-alive to the client) in front of both; SCRIPT_NAME \"\" added"),
    Scenario("nginx-wsgi", "nginx -> uwsgi_pass, modifier1 0, hello.py, 2 workers",
             "uWSGI python3", "wrk", "rps", ">=", 1.2, [HELLO],
             lambda p: ours(p, "--wsgi-file", HELLO, sock="--socket"),
             lambda p: uwsgi_peer(p, "python3", "--wsgi-file", HELLO, sock="--socket"), python3,
             nginx_modifier1=0),
    Scenario("sputnik", "Sputnik front page, 2 workers, --threads 20",
             "uWSGI lua51", "wrk", "rps", ">=", 1.5, [SPUTNIK],
             lambda p: ours(p, *LUA6, "--threads", 20, "--lua", SPUTNIK, env=sputnik_env("ours")),
             lambda p: uwsgi_peer(p, "lua51", *LUA6, "--threads", 20, "--lua", SPUTNIK,
                                  env=sputnik_env("uwsgi")), lua51,
             headers=CLOSE, expect=b"<html",
             note="both sides with their defaults: ours takes new connections on one thread per CPU "
                  "per worker (--thread-slots, 1 here) while the others wait unless a holder blocks; "
                  "--thread-slots 0 is uWSGI's way, every idle thread accepting"),
    Scenario("rss", "worker RSS after load, Lua + Python apps loaded, 2 workers",
             "uWSGI lua51+python3", "rss", "rss_mb", "<=", 1.5, [PIPPO, HELLO],
             lambda p: ours(p, *LUA6, "--lua", PIPPO, "--wsgi-file", HELLO),
             lambda p: uwsgi_peer(p, "lua51,python3", *LUA6, "--lua", PIPPO, "--wsgi-file", HELLO),
             both_plugins, headers=CLOSE, expect=b"Hello Wsapi",
             note="median RSS of the workers after wrk load on the Lua app (PSS and USS in latest.json)"),
    Scenario("p99-paced", f"p99 latency, pippo.lua, 2 workers, at the same offered load ({PACED_RATE} req/s, open loop)",
             "uWSGI lua51", "paced", "p99_ms", "<=", 1.0, [PIPPO],
             lambda p: ours(p, *LUA6, "--lua", PIPPO),
             lambda p: uwsgi_peer(p, "lua51", *LUA6, "--lua", PIPPO), lua51,
             expect=b"Hello Wsapi",
             note=f"bench/harness/paced.py: Poisson arrivals at {PACED_RATE} req/s (same seed both sides), a new "
                  "connection per request unless the server kept one alive; latency includes connect"),
    Scenario("locust-shop", "locust user mix: pages, form POST, cached fragment (40 users x 5 tasks/s)",
             "uWSGI python3", "locust", "p99_ms", "<=", None, [SHOP],
             lambda p: ours(p, "--wsgi-file", SHOP, "--cache2", "name=bench,items=100"),
             lambda p: uwsgi_peer(p, "python3", "--wsgi-file", SHOP, "--cache2", "name=bench,items=100"),
             python3, locust_user="Shop", locust_users=40, locust_env={"BENCH_SHOP_RATE": "5"},
             note="user-level figures (p99 here; req/s, p50, p95 in latest.json), no target: locust's own "
                  "cost per request on 2 cores is larger than the servers'"),
]

# The scaling curve (ours only: real uWSGI's lua async_sleep takes whole seconds, 0.05 -> no wait).
CURVE_WORKERS = [1, 2, 4]      # --processes N, --async 1
CURVE_ASYNC = [1, 8, 64]       # --processes 1, --async N
CURVE_SLEEP_S = 0.05


def curve_spec(port: int, workers: int, cores: int) -> ServerSpec:
    return ours(port, *LUA6, "--async", cores, "--lua", SLEEP, workers=workers)


BY_ID = {s.id: s for s in SCENARIOS}
ALL_IDS = [s.id for s in SCENARIOS] + ["curve"]
