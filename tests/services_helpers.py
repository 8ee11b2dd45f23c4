"""Helpers for the services tests: a fresh in-process services state, forked children that
report through a pipe, a tiny uwsgi-protocol client, a redis-server on a free port."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import time

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reset_services(opts=None):
    """Throw away every service's state and set them up again from opts (an Options)."""
    import uwsgid.services as services
    from uwsgid.services import cache, metrics, rpc, signals
    signals._reset_for_tests()
    cache._reset_for_tests()
    metrics._reset_for_tests()
    rpc._table.clear()
    services._done = False
    if opts is not None:
        services.setup(opts)


def make_opts(**values):
    """An Options with the given values (underscored names), the rest at their defaults."""
    import uwsgid.core_options  # noqa: F401
    import uwsgid.services  # noqa: F401  (declares the services options)
    from uwsgid.options import Options, lookup
    o = Options()
    for k, v in values.items():
        opt = lookup(k.replace("_", "-"))
        if opt is None:
            o._set[k] = v
        elif opt.multi:
            for item in (v if isinstance(v, list) else [v]):
                o.set(opt, item)
        else:
            o.set(opt, v)
    return o


def fork_children(n, body):
    """Run body(i) in n forked children; returns their exit codes (0 = body returned)."""
    pids = []
    for i in range(n):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                body(i)
            except BaseException:
                import traceback
                traceback.print_exc()
                code = 1
            os._exit(code)
        pids.append(pid)
    codes = []
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        codes.append(os.waitstatus_to_exitcode(status))
    return codes


def uwsgi_request(port, vars_: dict, body: bytes = b"", modifier1: int = 0, modifier2: int = 0,
                  host="127.0.0.1", timeout=10.0) -> bytes:
    """Send one uwsgi-protocol request; return the whole answer (until the server closes)."""
    payload = b"".join(struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
                       for k, v in ((k.encode() if isinstance(k, str) else k,
                                     v.encode() if isinstance(v, str) else v) for k, v in vars_.items()))
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(struct.pack("<BHB", modifier1, len(payload), modifier2) + payload + body)
        chunks = []
        while True:
            c = s.recv(65536)
            if not c:
                break
            chunks.append(c)
    return b"".join(chunks)


def uwsgi_http_get(port, path, modifier1, headers=None, timeout=10.0):
    """GET over the uwsgi protocol: (status int, body bytes)."""
    path_info, _, query = path.partition("?")
    vars_ = {"REQUEST_METHOD": "GET", "REQUEST_URI": path, "PATH_INFO": path_info, "QUERY_STRING": query,
             "SCRIPT_NAME": "", "SERVER_NAME": "localhost", "SERVER_PORT": str(port),
             "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "localhost"}
    for k, v in (headers or {}).items():
        vars_["HTTP_" + k.upper().replace("-", "_")] = v
    raw = uwsgi_request(port, vars_, modifier1=modifier1, timeout=timeout)
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return status, body


def _dechunk(data: bytes) -> bytes:
    out, pos = bytearray(), 0
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            break
        size = int(data[pos:end].split(b";")[0], 16)
        if size == 0:
            break
        out += data[end + 2:end + 2 + size]
        pos = end + 2 + size + 2
    return bytes(out)


class RedisServer:
    """redis-server on a free loopback port, no persistence, stopped by PID."""

    def __init__(self):
        self.port = free_port()
        self.proc = None

    def __enter__(self):
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (Debian package redis-server)")
        self.proc = subprocess.Popen([exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--daemonize", "no"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError("redis-server did not start")

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def uwsgi_command() -> list[str]:
    """./uwsgi when it runs (with both language plugins), else the in-process launcher."""
    import sys
    exe = ROOT / "uwsgi"
    if exe.exists():
        try:
            r = subprocess.run([str(exe), "--version"], capture_output=True, timeout=30, cwd=ROOT,
                               stdin=subprocess.DEVNULL)
            if r.returncode == 0:
                return [str(exe), "--plugins", "lua,cffi"]
        except (OSError, subprocess.TimeoutExpired):
            pass
    return [sys.executable, str(ROOT / "tests" / "services_launcher.py")]


class Instance:
    """One server process (its own session), log in a file, stopped by PID (SIGINT, then the
    session's process group with SIGKILL)."""

    def __init__(self, args, port, log_path, env=None):
        self.args = [str(a) for a in args]
        self.port = port
        self.log_path = log_path
        self.env = env
        self.proc = None

    def __enter__(self):
        env = dict(os.environ)
        env.update(self.env or {})
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(uwsgi_command() + self.args, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=ROOT, env=env, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.__exit__()
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"server not listening on {self.port}:\n{self.log()}")

    def log(self) -> str:
        try:
            return open(self.log_path, errors="replace").read()
        except OSError:
            return ""

    def __exit__(self, *exc):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGINT)
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.wait(5)
        self._log.close()


class Nginx:
    """nginx -p PREFIX -c CONF -g 'daemon off;' on a free port, stopped by PID."""

    def __init__(self, prefix, conf_text, port):
        self.prefix = prefix
        self.conf_text = conf_text
        self.port = port
        self.proc = None

    def __enter__(self):
        exe = shutil.which("nginx") or "/usr/sbin/nginx"
        conf = os.path.join(self.prefix, "nginx.conf")
        with open(conf, "w") as f:
            f.write(self.conf_text)
        self._log = open(os.path.join(self.prefix, "nginx.log"), "wb")
        self.proc = subprocess.Popen([exe, "-p", str(self.prefix), "-c", conf, "-e", "stderr"],
                                     stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("nginx exited: " + open(os.path.join(self.prefix, "nginx.log")).read())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError("nginx did not start")

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
