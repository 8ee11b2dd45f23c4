"""The scenarios of issue 7: what each side runs, how it is loaded, and the target ratio ours/peer.

Both sides get the same app file, the same number of workers (and threads/async cores), the same
logging setting (--disable-logging on both; gunicorn and nginx log no access lines by default /
by config) and the same client. Only the server differs.
"""

from __future__ import annotations

import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import load, static_files, tlscert
from .servers import OURS, PEER_UWSGI, ROOT, VENV_BIN, ServerSpec, binary_missing, peer_plugin_missing

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
    kind: str                         # wrk | rss | paced | locust | client
    metric: str                       # rps | rss_mb | p99_ms | req_per_cpu_s | msg_s
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
    nginx_workers: int = 1               # that nginx's worker_processes
    expect: bytes | None = None          # the preflight answer must contain this
    locust_user: str = ""
    locust_users: int = 0
    locust_env: dict[str, str] = field(default_factory=dict)
    note: str = ""
    prepare: Callable[[], object] | None = None   # run before the servers start (files to serve)
    worker_free: Callable[[int], ServerSpec] | None = None   # static-large: ours, one worker, for the check
    peer_worker_free: Callable[[int], ServerSpec] | None = None
    # kind "client": a scripted client run per side, (port, "ours"|"peer", seconds) -> a run's
    # dict with "value", "problem" and "count" (what the server's CPU is divided by)
    client: Callable[[int, str, float], dict] | None = None
    client_command: str = ""          # the client's command line, for latest.json
    target_on: str = "ratio"          # "ratio": ours/peer; "ours": our own figure (absolute target)
    tool_missing: Callable[[], str | None] = lambda: None    # a tool the scenario needs beside wrk
    # instead of the preflight GET (a server that speaks no HTTP): port -> None, or why it failed
    preflight: Callable[[int], str | None] | None = None

    @property
    def unit(self) -> str:
        return {"rps": "req/s", "rss_mb": "MB", "p99_ms": "ms", "req_per_cpu_s": "req/CPU-s",
                "msg_s": "msg/s"}[self.metric]


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


def flask_missing() -> str | None:
    if not (VENV_SITE / "flask").is_dir():
        return f"Flask is not installed in {VENV_SITE} (`make bench` installs the test extras)"
    return python3()


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
FLASK_HELLO = APPS / "flask_hello.py"
# our venv's packages (Flask), for the peer's --pythonpath: Debian's uWSGI embeds the same Python minor
VENV_SITE = ROOT / ".venv" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
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
    Scenario("wsgi-flask", "WSGI Flask hello (bench/apps/flask_hello.py), --http-socket, 2 workers, new connection "
             "per request", "uWSGI python3", "wrk", "rps", ">=", 1.0, [FLASK_HELLO],
             lambda p: ours(p, "--wsgi-file", FLASK_HELLO),
             lambda p: uwsgi_peer(p, "python3", "--pythonpath", VENV_SITE, "--wsgi-file", FLASK_HELLO), flask_missing,
             headers=CLOSE, expect=b"Hello World!",
             note="a framework app returns an iterable (werkzeug's ClosingIterator), not a list, with its "
                  "length declared: the native lane steps it once and sends it (lane_iter.c); the peer "
                  "imports Flask from our venv"),
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
             note="median RSS of the workers after wrk load on the Lua app (PSS and USS in latest.json); "
                  "bench/memory.py's memory-* cases split it: Lua only, Python only, both, per-core cost"),
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

# Static files (issue 14): both sides serve the same directory with --static-map; no app. The
# figure is the requests served per second of server CPU (user + sys of every process of the
# server, from /proc), i.e. CPU time per request inverted: ours/peer > 1 = ours spends less.
# req/s is beside it in latest.json and on the summary line. The peer loads the python3 plugin
# only so that it accepts modifier1 0 requests at all; no app is loaded on either side.
STATIC_MAP = ("--static-map", f"{static_files.MOUNT}={static_files.WWW}")
STATIC_NOTE = ("figure = requests per CPU-second of the server (CPU per request, inverted), req/s beside it; "
               "files written once and >= 2.5 s old before the load")


def static_ours(port: int, *extra, workers: int = 2) -> ServerSpec:
    return ours(port, *STATIC_MAP, *extra, workers=workers, ready_path=static_files.SMALL_URL)


def static_peer(port: int, *extra, workers: int = 2) -> ServerSpec:
    return uwsgi_peer(port, "python3", *STATIC_MAP, *extra, workers=workers, ready_path=static_files.SMALL_URL)


SCENARIOS += [
    Scenario("static-small", "static 1 KiB file, --static-map, 2 workers, keep-alive requested (the peer closes)",
             "uWSGI --static-map", "wrk", "req_per_cpu_s", ">=", 1.5, [],
             lambda p: static_ours(p), lambda p: static_peer(p), python3,
             path=static_files.SMALL_URL, expect=static_files.small_expect(), prepare=static_files.prepare,
             note=STATIC_NOTE + "; same client on both sides: real uWSGI's --http-socket closes every connection "
                                "(its --http11-socket keeps them, but then each sync worker is held by one "
                                "client: 45 req/s at 32 connections)"),
    Scenario("static-small-close", "static 1 KiB file, --static-map, 2 workers, new connection per request",
             "uWSGI --static-map", "wrk", "req_per_cpu_s", ">=", None, [],
             lambda p: static_ours(p), lambda p: static_peer(p), python3,
             path=static_files.SMALL_URL, headers=CLOSE, expect=static_files.small_expect(),
             prepare=static_files.prepare,
             note=STATIC_NOTE + "; reported, no target: the cost of a TCP connection per request (accept, the "
                                "parser's set-up, close) dominates on both sides"),
    Scenario("static-large", "static 10 MiB file, --static-map, --offload-threads 1, 2 workers, 8 connections",
             "uWSGI --static-map", "wrk", "req_per_cpu_s", ">=", 1.0, [],
             lambda p: static_ours(p, "--offload-threads", 1),
             lambda p: static_peer(p, "--offload-threads", 1), python3,
             path=static_files.LARGE_URL, connections=8, prepare=static_files.prepare,
             worker_free=lambda p: static_ours(p, "--offload-threads", 1, workers=1),
             peer_worker_free=lambda p: static_peer(p, "--offload-threads", 1, workers=1),
             note=STATIC_NOTE + "; then, one worker per side: a second request is answered while a stalled "
                                "10 MiB download is under way (the worker is free: offload)"),
]

# WebSockets, TLS and streaming (issue 15). The headline beside each figure is the server's CPU
# per request (per message for ws-echo): user + sys of every process of the server, from /proc.
WS_ECHO = APPS / "ws_echo.py"
HELLO_TLS = APPS / "hello_tls.py"
PACED_STREAM = APPS / "paced_stream.py"
WS_CONNECTIONS, WS_SIZE = 64, 1024
# each side's fastest form of the same app: ours the recv_nb + wait_fd_read loop on --async cores
# (about 3 us of CPU per message less than the blocking loop on --greenlet), uWSGI the blocking
# loop on ugreen (its /ws-async costs about twice as much)
WS_PATHS = {"ours": "/ws-async", "peer": "/ws"}
STREAMS = 16


WS_CLIENT = ("--connections", WS_CONNECTIONS, "--size", WS_SIZE, "--client", "auto")   # C (bench/ws_load.c) if gcc


def ws_client(port: int, label: str, duration: float) -> dict:
    r = load.run_client(load.WSLOAD, port, WS_PATHS[label], duration, *WS_CLIENT)
    return {"value": r["messages_per_s"], "problem": load.ws_problem(r), "count": r["messages"], **r}


def chunk_client(port: int, label: str, duration: float) -> dict:
    # at least one whole round of 2 s streams, whatever --duration says
    r = load.run_client(load.CHUNKLOAD, port, "/stream", max(duration, 2.5), "--streams", STREAMS)
    return {"value": r["delay_ms"]["p99"], "problem": load.chunk_problem(r), "count": r["chunks"], **r}


def ugreen() -> str | None:
    return python3() or peer_plugin_missing("ugreen")


def tls_peer_missing() -> str | None:
    return python3() or tlscert.peer_tls_missing()


def tls_ours(port: int) -> ServerSpec:
    argv = [str(OURS), "--master", "--processes", "2", "--disable-logging", *tlscert.https_socket(port),
            "--wsgi-file", str(HELLO_TLS)]
    return ServerSpec("ours", argv, port, signal.SIGINT, tls=True)


def tls_peer(port: int) -> ServerSpec:
    argv = [str(PEER_UWSGI), "--plugin", "python3", "--master", "--processes", "2", "--disable-logging",
            *tlscert.https_socket(port), "--wsgi-file", str(HELLO_TLS)]
    return ServerSpec("uwsgi", argv, port, signal.SIGINT, tls=True)


TLS_NOTE = ("bench/apps/hello_tls.py is hello.py with a Content-Length: real uWSGI's --https-socket closes "
            "every connection and wrk over TLS cannot frame an answer by the close; RSA 2048 self-signed "
            "certificate (bench/harness/tlscert.py)")

SCENARIOS += [
    Scenario("ws-echo", f"WebSocket echo, {WS_SIZE} B messages, {WS_CONNECTIONS} connections, uWSGI's "
             "websocket API, --async 64, 2 workers",
             "uWSGI python3 + ugreen", "client", "msg_s", ">=", 1.5, [WS_ECHO],
             lambda p: ours(p, "--async", 64, "--wsgi-file", WS_ECHO),
             lambda p: uwsgi_peer(p, "python3,ugreen", "--async", 64, "--ugreen", "--wsgi-file", WS_ECHO),
             ugreen, expect=b"websocket echo", client=ws_client,
             client_command=" ".join(load.client_command(load.WSLOAD, "PORT", "PATH", "SECONDS", *WS_CLIENT)),
             note="figure = echoed messages/s; server CPU per message beside it; the client is bench/ws_load.c "
                  "(the Python one when gcc is missing: the JSON's \"client\" says which). Each side runs its fastest "
                  "form of the app (PATH): ours --async 64 with /ws-async (websocket_recv_nb, then yield "
                  "uwsgi.wait_fd_read), the peer --async 64 --ugreen with the blocking /ws loop (threads and the "
                  "recv_nb loop are slower on it)"),
    Scenario("https-hello", "HTTPS hello, --https-socket, 2 workers, keep-alive requested (the peer closes)",
             "uWSGI python3 (OpenSSL)", "wrk", "rps", ">=", 1.3, [HELLO_TLS],
             tls_ours, tls_peer, tls_peer_missing, prepare=tlscert.prepare,
             tool_missing=tlscert.openssl_missing, expect=b"Hello World",
             note="same client on both sides; real uWSGI's --https-socket closes every connection, so each of "
                  "its requests pays a TLS handshake; " + TLS_NOTE),
    Scenario("https-hello-close", "HTTPS hello, --https-socket, 2 workers, new connection (TLS handshake) per request",
             "uWSGI python3 (OpenSSL)", "wrk", "rps", ">=", None, [HELLO_TLS],
             tls_ours, tls_peer, tls_peer_missing, prepare=tlscert.prepare,
             tool_missing=tlscert.openssl_missing, expect=b"Hello World", headers=CLOSE,
             note="reported, no target: a full handshake per request on both sides; " + TLS_NOTE),
    Scenario("chunk-delay", f"p99 delay of a chunk from the app's yield to the client, {STREAMS} streams of a "
             "chunk every 50 ms, --threads 8, 2 workers",
             "uWSGI python3", "client", "p99_ms", "<=", 5.0, [PACED_STREAM],
             lambda p: ours(p, "--threads", 8, "--wsgi-file", PACED_STREAM),
             lambda p: uwsgi_peer(p, "python3", "--threads", 8, "--wsgi-file", PACED_STREAM), python3,
             expect=b"paced stream", client=chunk_client, target_on="ours",
             client_command=" ".join(load.client_command(load.CHUNKLOAD, "PORT", "/stream", "SECONDS",
                                                         "--streams", STREAMS)),
             note="target on ours' own p99 (ms); the peer's figure is for reference (it writes each chunk "
                  "at once, unbuffered)"),
]

# The scaling curve (ours only: real uWSGI's lua async_sleep takes whole seconds, 0.05 -> no wait).
CURVE_WORKERS = [1, 2, 4]      # --processes N, --async 1
CURVE_ASYNC = [1, 8, 64]       # --processes 1, --async N
CURVE_SLEEP_S = 0.05


def curve_spec(port: int, workers: int, cores: int) -> ServerSpec:
    return ours(port, *LUA6, "--async", cores, "--lua", SLEEP, workers=workers)


# 10 ms of I/O per request under gevent (issue 19): 2 workers x 100 greenlets, 200 connections;
# the ideal is 2 x 100 / 0.010 = 20,000 req/s (latest.json has the fraction reached and p99).
IO10 = APPS / "io10.py"
GEVENT_CORES = 100
IO10_NOTE = (f"app waits 10 ms (gevent-patched time.sleep); ideal 2 x {GEVENT_CORES} / 0.010 = 20000 req/s; "
             "p99 in latest.json")


def gevent_uwsgi_missing() -> str | None:
    return python3() or peer_plugin_missing("gevent_python3")


def gunicorn_gevent_peer(port: int, module: str, chdir: Path, workers: int = 2) -> ServerSpec:
    argv = [str(VENV_BIN / "gunicorn"), "--workers", str(workers), "--worker-class", "gevent",
            "--worker-connections", str(GEVENT_CORES), "--bind", f"127.0.0.1:{port}", "--chdir", str(chdir),
            module]
    return ServerSpec("gunicorn", argv, port, signal.SIGINT)


def gunicorn_gevent_missing() -> str | None:
    try:
        import gevent  # noqa: F401  (gunicorn's gevent worker needs it in the venv)
    except ImportError:
        return "missing: gevent in the venv (pip install gevent; `make bench` does it)"
    return gunicorn_missing()


SCENARIOS += [
    Scenario("gevent-io", f"10 ms of I/O per request, --gevent {GEVENT_CORES} --gevent-monkey-patch, 2 workers, "
             "200 connections",
             "uWSGI python3 + gevent", "wrk", "rps", ">=", 1.5, [IO10],
             lambda p: ours(p, "--gevent", GEVENT_CORES, "--gevent-monkey-patch", "--wsgi-file", IO10),
             lambda p: uwsgi_peer(p, "python3,gevent_python3", "--gevent", GEVENT_CORES, "--gevent-monkey-patch",
                                  "--wsgi-file", IO10),
             gevent_uwsgi_missing, connections=200, expect=b"slept 10ms", note=IO10_NOTE),
    Scenario("gevent-io-gunicorn", "10 ms of I/O per request, ours --gevent 100 against gunicorn's gevent worker "
             "(--worker-connections 100), 2 workers, 200 connections",
             "gunicorn 2 gevent", "wrk", "rps", ">=", 2.0, [IO10],
             lambda p: ours(p, "--gevent", GEVENT_CORES, "--gevent-monkey-patch", "--wsgi-file", IO10),
             lambda p: gunicorn_gevent_peer(p, "io10:application", APPS), gunicorn_gevent_missing,
             connections=200, expect=b"slept 10ms", note=IO10_NOTE),
]

# ---- ASGI (issue 19): ours --asgi against uvicorn (httptools + uvloop) and Granian, 2 workers ----
ASGI_APP = APPS / "asgi_hello.py"
ASGI_CORES = 100


def asgi_ours(port: int) -> ServerSpec:
    return ours(port, "--asgi", "asgi_hello:app", "--async", ASGI_CORES, "--pythonpath", APPS)


def uvicorn_peer(port: int, workers: int = 2) -> ServerSpec:
    argv = [str(VENV_BIN / "uvicorn"), "--workers", str(workers), "--http", "httptools", "--loop", "uvloop",
            "--no-access-log", "--lifespan", "off", "--host", "127.0.0.1", "--port", str(port),
            "--app-dir", str(APPS), "asgi_hello:app"]
    return ServerSpec("uvicorn", argv, port, signal.SIGINT)


def granian_peer(port: int, workers: int = 2) -> ServerSpec:
    argv = [str(VENV_BIN / "granian"), "--interface", "asgi", "--workers", str(workers), "--no-access-log",
            "--host", "127.0.0.1", "--port", str(port), "--working-dir", str(APPS), "asgi_hello:app"]
    return ServerSpec("granian", argv, port, signal.SIGINT)


def uvicorn_missing() -> str | None:
    for mod in ("uvicorn", "uvloop", "httptools"):
        try:
            __import__(mod)
        except ImportError:
            return f"missing: {mod} in the venv (pip install uvicorn uvloop httptools; `make bench` does it)"
    return None


def granian_missing() -> str | None:
    return binary_missing(VENV_BIN / "granian", "pip install granian (`make bench` does it)")


ASGI_NOTE = f"--asgi, --async {ASGI_CORES}; the peers' workers are unbounded (one asyncio loop each)"


def asgi_ws_client(port: int, label: str, duration: float) -> dict:
    r = load.run_client(load.WSLOAD, port, "/ws", duration, "--connections", WS_CONNECTIONS, "--size", WS_SIZE)
    return {"value": r["messages_per_s"], "problem": load.ws_problem(r), "count": r["messages"], **r}


def uvicorn_ws_peer(port: int) -> ServerSpec:
    spec = uvicorn_peer(port)
    spec.argv[1:1] = ["--ws", "websockets"]
    return spec
SCENARIOS += [
    Scenario("asgi-hello-uvicorn", "ASGI hello, 2 workers, keep-alive, 64 connections",
             "uvicorn httptools+uvloop", "wrk", "rps", ">=", 1.2, [ASGI_APP], asgi_ours, uvicorn_peer,
             uvicorn_missing, connections=64, expect=b"Hello World!", note=ASGI_NOTE),
    Scenario("asgi-hello-granian", "ASGI hello, 2 workers, keep-alive, 64 connections",
             "Granian ASGI", "wrk", "rps", ">=", 1.0, [ASGI_APP], asgi_ours, granian_peer,
             granian_missing, connections=64, expect=b"Hello World!", note=ASGI_NOTE),
    Scenario("asgi-sleep-uvicorn", "ASGI app awaiting 10 ms (asyncio.sleep), 2 workers, 200 connections",
             "uvicorn httptools+uvloop", "wrk", "rps", ">=", 1.2, [ASGI_APP], asgi_ours, uvicorn_peer,
             uvicorn_missing, path="/sleep", connections=200, expect=b"slept 10ms", note=ASGI_NOTE),
    Scenario("asgi-sleep-granian", "ASGI app awaiting 10 ms (asyncio.sleep), 2 workers, 200 connections",
             "Granian ASGI", "wrk", "rps", ">=", 1.0, [ASGI_APP], asgi_ours, granian_peer,
             granian_missing, path="/sleep", connections=200, expect=b"slept 10ms", note=ASGI_NOTE),
    Scenario("asgi-ws-echo", f"ASGI WebSocket echo, {WS_SIZE} B messages, {WS_CONNECTIONS} connections, 2 workers",
             "uvicorn websockets+uvloop", "client", "msg_s", ">=", 1.2, [ASGI_APP], asgi_ours, uvicorn_ws_peer,
             uvicorn_missing, expect=b"Hello World!", client=asgi_ws_client,
             client_command=" ".join(load.client_command(load.WSLOAD, "PORT", "/ws", "SECONDS",
                                                         "--connections", WS_CONNECTIONS, "--size", WS_SIZE)),
             note="figure = echoed messages/s; server CPU per message beside it. " + ASGI_NOTE),
]

# Raw TCP handlers (issue 22): the line-echo example against a plain asyncio echo server, both
# one process on one core's worth of event loop.
RAW_ECHO = ROOT / "examples" / "raw_echo.py"
ASYNCIO_ECHO = APPS / "asyncio_echo.py"
RAW_LOAD = Path(__file__).resolve().parent / "rawload.py"
RAW_CONNECTIONS, RAW_SIZE = 64, 1024


def raw_client(port: int, label: str, duration: float) -> dict:
    r = load.run_client(RAW_LOAD, port, "/", duration, "--connections", RAW_CONNECTIONS, "--size", RAW_SIZE)
    return {"value": r["messages_per_s"], "problem": load.ws_problem(r), "count": r["messages"], **r}


def raw_preflight(port: int) -> str | None:
    from .rawload import check
    return check("127.0.0.1", port, RAW_SIZE)


def asyncio_peer(port: int) -> ServerSpec:
    return ServerSpec("asyncio", [str(VENV_BIN / "python"), str(ASYNCIO_ECHO), str(port)], port,
                      signal.SIGINT, http_ready=False)


SCENARIOS += [
    Scenario("raw-echo", f"raw TCP line echo, {RAW_SIZE} B messages, {RAW_CONNECTIONS} connections, "
             "examples/raw_echo.py on --raw-socket, 1 worker --async 64 --greenlet",
             "asyncio echo server (stdlib, 1 process)", "client", "msg_s", ">=", 1.0, [RAW_ECHO, ASYNCIO_ECHO],
             lambda p: ours(p, "--async", RAW_CONNECTIONS, "--greenlet", "--python-raw", RAW_ECHO,
                            sock="--raw-socket", workers=1),
             asyncio_peer, client=raw_client, preflight=raw_preflight,
             client_command=" ".join(load.client_command(RAW_LOAD, "PORT", "/", "SECONDS",
                                                         "--connections", RAW_CONNECTIONS, "--size", RAW_SIZE)),
             note="figure = echoed messages/s; server CPU per message beside it. Both sides: one process, the "
                  "same line protocol (the peer: asyncio.start_server, readline/write/drain)"),
]

# Cooperative calls without gevent (issue 19): the same 10 ms app under --async 100 --greenlet
# --greenlet-cooperative (our time.sleep waits on the worker's loop), against uWSGI + gevent.
COOP_IO10 = APPS / "io10.py"
COOP_CORES = 100

# A Lua app doing one Redis GET per request (issue 19): ours through a cosocket under --async 32,
# real uWSGI's lua plugin through a blocking LuaSocket client. prepare() starts a redis-server
# (no persistence) on a free port for the run; both sides read its port from $BENCH_REDIS_PORT.
REDIS_GET = APPS / "redis_get.lua"
LUA_SOCKET = Path("/usr/share/lua/5.1/socket.lua")
_redis: dict = {}


def redis_prepare() -> None:
    import atexit
    import os
    import shutil
    import socket
    import subprocess
    import time

    from .servers import free_port
    if _redis.get("proc") is not None and _redis["proc"].poll() is None:
        return
    port = free_port()
    proc = subprocess.Popen([shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    atexit.register(lambda: proc.poll() is None and os.kill(proc.pid, signal.SIGTERM))
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
                c.sendall(b"*3\r\n$3\r\nSET\r\n$9\r\nbench:key\r\n$5\r\nhallo\r\n")
                if c.recv(16) == b"+OK\r\n":
                    break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    _redis.update(proc=proc, port=port)


def redis_env() -> dict[str, str]:
    return {"BENCH_REDIS_PORT": str(_redis.get("port", 6379))}


def redis_missing() -> str | None:
    return binary_missing("redis-server", "apt-get install redis-server")


def lua_socket_peer_missing() -> str | None:
    if not LUA_SOCKET.exists():
        return "missing: LuaSocket for Lua 5.1 (apt-get install lua-socket)"
    return lua51()


SCENARIOS += [
    Scenario("greenlet-io", f"10 ms of I/O per request, --async {COOP_CORES} --greenlet --greenlet-cooperative "
             "(no gevent), 2 workers, 200 connections",
             "uWSGI python3 + gevent", "wrk", "rps", ">=", 1.5, [COOP_IO10],
             lambda p: ours(p, "--async", COOP_CORES, "--greenlet", "--greenlet-cooperative", "--wsgi-file", COOP_IO10),
             lambda p: uwsgi_peer(p, "python3,gevent_python3", "--gevent", COOP_CORES, "--gevent-monkey-patch",
                                  "--wsgi-file", COOP_IO10),
             lambda: python3() or peer_plugin_missing("gevent_python3"), connections=200, expect=b"slept 10ms",
             note=f"the app's time.sleep(0.010): ours made cooperative by --greenlet-cooperative, the peer's by "
                  f"gevent's monkey-patching; ideal 2 x {COOP_CORES} / 0.010 = 20000 req/s; p99 in latest.json"),
    Scenario("lua-redis-cosocket", "Lua: one Redis GET per request, ours through uwsgi.tcp() (cosocket, pool), "
             "--async 32, 2 workers",
             "uWSGI lua51 + LuaSocket", "wrk", "rps", ">=", 3.0, [REDIS_GET],
             lambda p: ours(p, *LUA6, "--async", 32, "--lua", REDIS_GET, env=redis_env()),
             lambda p: uwsgi_peer(p, "lua51", *LUA6, "--async", 32, "--lua", REDIS_GET, env=redis_env()),
             lua_socket_peer_missing, expect=b"redis says hallo", prepare=redis_prepare, tool_missing=redis_missing,
             note="same app file: ours waits on the worker's loop (cosocket + keepalive pool), the peer blocks "
                  "its worker in LuaSocket (one connection per process); one local redis-server"),
]

BY_ID = {s.id: s for s in SCENARIOS}
ALL_IDS = [s.id for s in SCENARIOS] + ["curve"]

# Internal routing (issue 22): the hello scenarios with three typical routes on both sides (real
# uWSGI loads router_redirect for redirect-permanent; the rest is in its core): a force-HTTPS
# check (a TLS proxy in front says X-Forwarded-Proto: http for a plain-http client; the load,
# like a direct client, sends none, so it does not fire), a security header, and a final-chain
# log of slow requests (none is slow here). The ratio is compared with the no-route scenario's
# (wsgi-hello, lua-close). bench/routing_cost.py measures the CPU per request of each route.
ROUTES_THREE = [
    "--route-if", "equal:${HTTP_X_FORWARDED_PROTO};http redirect-permanent:https://${HTTP_HOST}${REQUEST_URI}",
    "--route-run", "addheader:X-Content-Type-Options: nosniff",
    "--final-route-if", "ishigher:${uwsgi[rtime]};1000000 log:slow request ${REQUEST_URI}: ${uwsgi[rtime]} us",
]
ROUTES_NOTE = ("the same three routes on both sides (force-HTTPS check, addheader, final-route log of slow "
               "requests; neither the redirect nor the log fires); compare with the no-route scenario's ratio")


def routes_python3() -> str | None:
    return python3() or peer_plugin_missing("router_redirect")


def routes_lua51() -> str | None:
    return lua51() or peer_plugin_missing("router_redirect")


ROUTE_SCENARIOS = [
    Scenario("wsgi-hello-routes", "WSGI hello.py + 3 routes, --http-socket, 2 workers, new connection per request",
             "uWSGI python3 + router_redirect", "wrk", "rps", ">=", 1.3, [HELLO],
             lambda p: ours(p, "--wsgi-file", HELLO, *ROUTES_THREE),
             lambda p: uwsgi_peer(p, "python3,router_redirect", "--wsgi-file", HELLO, *ROUTES_THREE),
             routes_python3, headers=CLOSE, expect=b"Hello World", note=ROUTES_NOTE),
    Scenario("lua-hello-routes", "Lua pippo.lua + 3 routes, --http-socket, 2 workers, new connection per request",
             "uWSGI lua51 + router_redirect", "wrk", "rps", ">=", 1.3, [PIPPO],
             lambda p: ours(p, *LUA6, "--lua", PIPPO, *ROUTES_THREE),
             lambda p: uwsgi_peer(p, "lua51,router_redirect", *LUA6, "--lua", PIPPO, *ROUTES_THREE),
             routes_lua51, headers=CLOSE, expect=b"Hello Wsapi", note=ROUTES_NOTE),
]
SCENARIOS += ROUTE_SCENARIOS
BY_ID.update({s.id: s for s in ROUTE_SCENARIOS})
ALL_IDS[ALL_IDS.index("curve"):ALL_IDS.index("curve")] = [s.id for s in ROUTE_SCENARIOS]

# The native request path (issue 16): WSGI hello over a kept-alive --http-socket (uWSGI closes
# anyway), and over --socket with the C uwsgi-protocol client and no nginx (bench/uwsgi_load.c).
SOCKET_CONNECTIONS = 32


def socket_client(port: int, label: str, duration: float) -> dict:
    from .uwsgiload import run
    return run(port, duration, SOCKET_CONNECTIONS)


def socket_preflight(port: int) -> str | None:
    from .uwsgiload import check
    return check(port)


def socket_tool() -> str | None:
    from .uwsgiload import missing
    return missing()


NATIVE_SCENARIOS = [
    Scenario("wsgi-keepalive", "WSGI hello.py, --http-socket, 2 workers, the client keeps alive (uWSGI closes anyway)",
             "uWSGI python3", "wrk", "rps", ">=", 1.5, [HELLO],
             lambda p: ours(p, "--wsgi-file", HELLO),
             lambda p: uwsgi_peer(p, "python3", "--wsgi-file", HELLO), python3),
    Scenario("wsgi-socket", f"WSGI hello.py, --socket (uwsgi protocol, no nginx), 2 workers, {SOCKET_CONNECTIONS} "
             "connections of bench/uwsgi_load.c, a new connection per request",
             "uWSGI python3", "client", "rps", ">=", 1.5, [HELLO],
             lambda p: ours(p, "--wsgi-file", HELLO, sock="--socket"),
             lambda p: uwsgi_peer(p, "python3", "--wsgi-file", HELLO, sock="--socket"), python3,
             client=socket_client, preflight=socket_preflight, tool_missing=socket_tool,
             client_command=f"uwsgi_load -c {SOCKET_CONNECTIONS} -d SECONDS 127.0.0.1 PORT",
             note="figure = requests/s of the C uwsgi-protocol client; server CPU per request beside it"),
]
NATIVE_SCENARIOS += [
    Scenario("nginx-lua-2w", "nginx (worker_processes 2) -> uwsgi_pass, modifier1 6, pippo.lua, 2 workers",
             "uWSGI lua51", "wrk", "rps", ">=", 1.0, [PIPPO],
             lambda p: ours(p, "--lua", PIPPO, sock="--socket"),
             lambda p: uwsgi_peer(p, "lua51", "--lua", PIPPO, sock="--socket"), lua51,
             nginx_modifier1=6, nginx_workers=2, expect=b"Hello Wsapi",
             note="nginx-lua with nginx at worker_processes 2: nginx is no longer the ceiling alone"),
    Scenario("nginx-wsgi-2w", "nginx (worker_processes 2) -> uwsgi_pass, modifier1 0, hello.py, 2 workers",
             "uWSGI python3", "wrk", "rps", ">=", 1.0, [HELLO],
             lambda p: ours(p, "--wsgi-file", HELLO, sock="--socket"),
             lambda p: uwsgi_peer(p, "python3", "--wsgi-file", HELLO, sock="--socket"), python3,
             nginx_modifier1=0, nginx_workers=2),
]
SCENARIOS += NATIVE_SCENARIOS
BY_ID.update({s.id: s for s in NATIVE_SCENARIOS})
ALL_IDS[ALL_IDS.index("wsgi-hello") + 1:ALL_IDS.index("wsgi-hello") + 1] = [s.id for s in NATIVE_SCENARIOS]
