"""Shared test helpers: free loopback ports, a real ./uwsgi process that is always stopped by PID."""

from __future__ import annotations

import http.client
import os
import signal as _signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UWSGI = ROOT / "uwsgi"
EXAMPLES = ROOT / "examples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, host: str = "127.0.0.1", timeout: float = 20.0, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


class Server:
    """A ./uwsgi process: `with Server(["--http-socket", f"127.0.0.1:{port}", ...], port) as s:`.

    Its log (stdout+stderr) goes to a file; `s.log()` reads it. On exit it is stopped with
    SIGINT (immediate shutdown), then SIGKILL after a grace period, by PID only.
    """

    def __init__(self, args, port: int | None = None, binary: Path = UWSGI, env=None,
                 cwd=ROOT, log_path: Path | None = None, wait: bool = True, stdin=subprocess.DEVNULL):
        self.args = [str(a) for a in args]
        self.port = port
        self.binary = binary
        self.env = env
        self.cwd = cwd
        self.wait = wait
        self.stdin = stdin
        self.log_path = log_path or Path(os.environ.get("TMPDIR", "/tmp")) / f"uwsgid-test-{os.getpid()}-{id(self)}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Server":
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([str(self.binary), *self.args], stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=self.stdin, cwd=self.cwd, env=env, start_new_session=True)
        if self.wait and self.port:
            try:
                wait_port(self.port, proc=self.proc)
            except Exception:
                self.stop()
                raise RuntimeError(f"server did not start; log:\n{self.log()}")
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def signal(self, sig) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self, sig=_signal.SIGINT, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                # The whole session we started (master and its workers), by its group id = our PID.
                try:
                    os.killpg(self.proc.pid, _signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        # Workers left behind by a crashed master: same process group, started by us.
        try:
            os.killpg(self.proc.pid, _signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def http_get(port: int, path: str = "/", host: str = "127.0.0.1", headers=None, timeout: float = 10.0):
    """One GET on a new connection: returns (status, headers dict (lower-case), body bytes)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def run_uwsgi(args, timeout: float = 30.0, env=None, binary: Path = UWSGI):
    """Run ./uwsgi to completion (for --version, --help, error exits): CompletedProcess."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=full_env, stdin=subprocess.DEVNULL)
