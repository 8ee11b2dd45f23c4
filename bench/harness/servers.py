"""Start and stop the servers under test: ours (./uwsgi), real uWSGI, gunicorn, nginx.

Every server runs in its own session (process group) on a free loopback port, logs to a file,
and is stopped by its PID: a uWSGI master with SIGINT (SIGTERM reloads it in 2.0), then the group
with SIGKILL after a grace period, so no worker outlives the harness.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
OURS = ROOT / "uwsgi"
PEER_UWSGI = Path("/usr/bin/uwsgi")
VENV_BIN = ROOT / ".venv" / "bin"


class StartError(RuntimeError):
    """A server exited or never answered; the message carries the tail of its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_connection(scheme: str, host: str, port: int, timeout: float) -> http.client.HTTPConnection:
    """A client connection; over TLS the bench's self-signed certificate is not verified."""
    if scheme == "https":
        import ssl
        return http.client.HTTPSConnection(host, port, timeout=timeout,
                                           context=ssl._create_unverified_context())
    return http.client.HTTPConnection(host, port, timeout=timeout)


@dataclass
class ServerSpec:
    label: str                       # "ours", "uwsgi", "gunicorn", "nginx"
    argv: list[str]
    port: int                        # the port that answers when it is ready
    stop_signal: int = signal.SIGINT
    cwd: Path = ROOT
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/"            # GET that must answer (any status < 500) before load starts
    http_ready: bool = True          # False for a uwsgi-protocol socket (nginx checks it instead)
    tls: bool = False                # an --https-socket: the readiness GET goes over TLS

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def command(self) -> str:
        return " ".join(self.argv)


class Server:
    def __init__(self, spec: ServerSpec, log_dir: Path):
        self.spec = spec
        self.log_path = log_dir / f"{spec.label}-{spec.port}.log"
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self, timeout: float = 60.0) -> "Server":
        env = dict(os.environ)
        env.update(self.spec.env)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.spec.argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.spec.cwd, env=env,
                                     start_new_session=True)
        try:
            self._wait_ready(timeout)
        except Exception:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StartError(f"{self.spec.label} exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if not self.spec.http_ready:
                    with socket.create_connection(("127.0.0.1", self.spec.port), timeout=1):
                        return
                conn = http_connection(self.spec.scheme, "127.0.0.1", self.spec.port, 10)
                try:
                    conn.request("GET", self.spec.ready_path)
                    resp = conn.getresponse()
                    resp.read()
                    if resp.status < 500:
                        return
                    last = f"HTTP {resp.status}"
                finally:
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.1)
        raise StartError(f"{self.spec.label} not ready on port {self.spec.port} after {timeout:.0f}s "
                         f"({last}): {self.log_tail()}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def worker_pids(self) -> list[int]:
        """Direct children of the master: the workers (what uWSGI and we fork)."""
        try:
            return [c.pid for c in psutil.Process(self.proc.pid).children(recursive=False)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server's processes (master and every child) so far,
        those reaped included: a worker that exits mid-run (max-requests, a respawn) leaves its
        time in its parent's children times, so the sum never drops between two readings."""
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.Error:
                pass
        return total

    def log_tail(self, lines: int = 12) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except FileNotFoundError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"

    def stop(self, grace: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, self.spec.stop_signal)
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                pass
        # The session we started (leader = our child): workers a master left behind.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        if self._log:
            self._log.close()
            self._log = None

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def ours_available() -> str | None:
    """None when ./uwsgi can run, else the reason."""
    if not OURS.exists():
        return "missing: ./uwsgi (build it with `make build`)"
    if not os.access(OURS, os.X_OK):
        return "missing: ./uwsgi is not executable"
    return None


def binary_missing(path: Path | str, hint: str) -> str | None:
    p = Path(path)
    if p.is_absolute():
        return None if p.exists() else f"missing: {p} ({hint})"
    from shutil import which
    return None if which(str(p)) else f"missing: {p} ({hint})"


def peer_plugin_missing(name: str) -> str | None:
    if not PEER_UWSGI.exists():
        return "missing: /usr/bin/uwsgi (apt-get install uwsgi-core; `make bench` does it)"
    if not Path(f"/usr/lib/uwsgi/plugins/{name}_plugin.so").exists():
        pkg = {"lua51": "uwsgi-plugin-lua5.1", "python3": "uwsgi-plugin-python3"}.get(name, name)
        return f"missing: uWSGI plugin {name} (apt-get install {pkg})"
    return None


NULL_UPSTREAM_C = ROOT / "bench" / "apps" / "null_upstream.c"


def build_null_upstream(out_dir: Path) -> tuple[Path | None, str | None]:
    """Compile bench/apps/null_upstream.c into out_dir: (binary, None) or (None, why not)."""
    binary = out_dir / "null_upstream"
    if binary.exists():
        return binary, None
    try:
        r = subprocess.run(["gcc", "-O2", "-o", str(binary), str(NULL_UPSTREAM_C)],
                           capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"cannot build the null upstream: {exc}"
    if r.returncode != 0:
        return None, f"cannot build the null upstream: {r.stderr.strip()[-200:]}"
    return binary, None


def null_upstream(binary: Path, port: int, body: bytes) -> ServerSpec:
    """The no-work uwsgi upstream (bench/apps/null_upstream.c) answering `body`."""
    return ServerSpec("null-upstream", [str(binary), str(port), body.decode("latin-1")], port,
                      signal.SIGINT, http_ready=False)


def nginx_conf(prefix: Path, routes: list[tuple[int, int, int]], workers: int = 1) -> Path:
    """An nginx config in its own prefix: one server block per (listen port, uwsgi port, modifier1).

    Both sides go through the same nginx process with the same directives. Debian's uwsgi_params
    sends no SCRIPT_NAME, on which pippo.lua breaks under real uWSGI: we add it, for both sides.
    """
    for d in ("logs", "tmp/body", "tmp/uwsgi", "tmp/proxy", "tmp/fastcgi", "tmp/scgi"):
        (prefix / d).mkdir(parents=True, exist_ok=True)
    blocks = []
    for listen, upstream, modifier1 in routes:
        blocks.append(f"""
    server {{
        listen 127.0.0.1:{listen};
        location / {{
            include /etc/nginx/uwsgi_params;
            uwsgi_param SCRIPT_NAME "";
            uwsgi_modifier1 {modifier1};
            uwsgi_pass 127.0.0.1:{upstream};
        }}
    }}""")
    user = "user root;" if os.geteuid() == 0 else ""
    conf = f"""{user}
worker_processes {workers};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    scgi_temp_path {prefix}/tmp/scgi;
    keepalive_requests 1000000;
{''.join(blocks)}
}}
"""
    path = prefix / "nginx.conf"
    path.write_text(conf)
    return path
