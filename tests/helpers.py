"""The test suite's shared helpers: free loopback ports, child processes in their own session that
are always stopped by PID (./uwsgi, launchers, redis, nginx: see nginx.py), and small HTTP and
uwsgi-protocol clients. Area helpers (cli_helpers.py, http_helpers.py, ...) keep only what is
specific to their area and build on these."""

from __future__ import annotations

import http.client
import os
import signal as _signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UWSGI = ROOT / "uwsgi"
EXAMPLES = ROOT / "examples"
PY = str(ROOT / ".venv" / "bin" / "python")

# A loaded 2-core machine (the suite runs next to builds and benchmarks) can take seconds to
# start a server that imports both language runtimes: generous bounds, failures still say why.
START_TIMEOUT = 60.0


_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, never the same twice in a session (tests take two
    or three in a row and bind them later: the kernel could hand a closed one out again)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def wait_port(port: int, host: str = "127.0.0.1", timeout: float = START_TIMEOUT, proc=None) -> None:
    """Until something accepts on host:port; raises if `proc` exits first or after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


class Server:
    """A child process in its own session (by default ./uwsgi ARGS), its stdout+stderr in a log file.

        with Server(["--http-socket", f"127.0.0.1:{port}", ...], port) as s: ...

    start() waits until `port` accepts (wait=False: the caller waits, e.g. for an exit code).
    stop() sends `stop_signal` (SIGINT: a uWSGI master's immediate shutdown) to the PID, waits,
    then SIGKILLs the process group it leads (workers a crashed master left behind); stop() does
    not reap the leader before that, so the group id cannot have been reused meanwhile. `command` replaces the
    binary (e.g. [python, launcher.py]). A log file the caller did not name is removed at stop;
    log() still returns its text afterwards.
    """

    def __init__(self, args=(), port: int | None = None, binary: Path | str = UWSGI, env=None, cwd=ROOT,
                 log_path: Path | None = None, wait: bool = True, stdin=subprocess.DEVNULL,
                 command=None, stop_signal=_signal.SIGINT, start_timeout: float = START_TIMEOUT):
        self.argv = [str(a) for a in (command or [binary])] + [str(a) for a in args]
        self.port = port
        self.env = env
        self.cwd = cwd
        self.wait_ready = wait
        self.stdin = stdin
        self.stop_signal = stop_signal
        self.start_timeout = start_timeout
        self._own_log = log_path is None
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix="uwsgid-test-", suffix=".log")
            os.close(fd)
            log_path = Path(name)
        self.log_path = Path(log_path)
        self.proc: subprocess.Popen | None = None
        self._log = None
        self._final_log: str | None = None

    def start(self) -> "Server":
        env = dict(os.environ)
        env.update(self.env or {})
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=self.stdin,
                                     cwd=self.cwd, env=env, start_new_session=True)
        if self.wait_ready and self.port:
            self.wait_port()
        return self

    def wait_port(self, port: int | None = None, timeout: float | None = None) -> "Server":
        """Until `port` (default: the server's) accepts; on failure stop and raise with the log."""
        try:
            wait_port(port or self.port, proc=self.proc, timeout=timeout or self.start_timeout)
        except Exception as e:
            self.stop()
            raise RuntimeError(f"server did not start ({e}); log:\n{self.log()}") from None
        return self

    def wait_log(self, text: str, timeout: float = 30.0, count: int = 1) -> str:
        """Until `text` appears `count` times in the log; returns the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if log.count(text) >= count:
                return log
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} (x{count}) not in the log after {timeout}s:\n{self.log()}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        if self._final_log is not None:
            return self._final_log
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def signal(self, sig) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def _wait_unreaped(self, timeout: float) -> bool:
        """Wait for the leader to exit without reaping it (its PID keeps the group id ours)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.returncode is not None:
                return True
            try:
                if os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                    return True
            except ChildProcessError:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def stop(self, sig=None, timeout: float = 15.0) -> int | None:
        """Stop by PID (`sig`, default stop_signal), then SIGKILL the group; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            try:
                os.kill(self.proc.pid, sig or self.stop_signal)
            except ProcessLookupError:
                pass
            self._wait_unreaped(timeout)
        # Our session (master, workers, anything they left), by the group id = the leader's PID.
        try:
            os.killpg(self.proc.pid, _signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
            if self._own_log:
                self._final_log = self.log()
                self.log_path.unlink(missing_ok=True)
        return self.proc.returncode

    def __enter__(self) -> "Server":
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def run_uwsgi(args, timeout: float = 60.0, env=None, binary: Path | str = UWSGI):
    """Run ./uwsgi to completion (for --version, --help, error exits): CompletedProcess (text)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=full_env, stdin=subprocess.DEVNULL)


# ---- clients ---------------------------------------------------------------------------------

def http_request(port: int, method: str = "GET", path: str = "/", body=None, headers=None,
                 host: str = "127.0.0.1", timeout: float = 20.0):
    """One request on a new connection: (status, headers dict (lower-case names), body bytes)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def http_get(port: int, path: str = "/", host: str = "127.0.0.1", headers=None, timeout: float = 20.0):
    """GET on a new connection: (status, headers dict (lower-case), body bytes)."""
    return http_request(port, "GET", path, headers=headers, host=host, timeout=timeout)


def connect(address: str, timeout: float = 10.0) -> socket.socket:
    """A client socket to a listener address (host:port, [v6]:port, /path, @abstract)."""
    if address.startswith(("@", "/")):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(timeout)
        s.connect("\0" + address[1:] if address.startswith("@") else address)
        return s
    if address.startswith("["):
        host, port = address[1:].split("]:")
        s = socket.socket(socket.AF_INET6)
        s.settimeout(timeout)
        s.connect((host, int(port)))
        return s
    host, port = address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=timeout)


def recv_all(s: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything until the peer closes (or resets, or `timeout` of silence)."""
    s.settimeout(timeout)
    chunks = []
    while True:
        try:
            d = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not d:
            break
        chunks.append(d)
    return b"".join(chunks)


def raw(address: str, data: bytes, timeout: float = 10.0, half_close: bool = True) -> bytes:
    """Send data, half-close (not for nginx: it takes a client FIN as an abort), read the whole
    answer until the server closes."""
    s = connect(address, timeout)
    try:
        s.sendall(data)
        if half_close:
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        return recv_all(s, timeout)
    finally:
        s.close()


def send_paced(port: int, pieces, pause: float = 0.05, timeout: float = 10.0) -> bytes:
    """Send each piece with `pause` seconds after it (one read each on the server's side: a
    request in parts, or requests one after another, not a pipeline), then read the whole
    answer until the server closes."""
    s = connect(f"127.0.0.1:{port}", timeout)
    try:
        for data in pieces:
            s.sendall(data)
            time.sleep(pause)
        return recv_all(s, timeout)
    finally:
        s.close()


def tcp_rx_queue(local_port: int, remote_port: int = 0) -> int:
    """/proc/net/tcp's rx_queue of the IPv4 socket on local_port (a test's loopback server):
    for a connection to remote_port, the bytes received that its owner has not read yet; for
    the listener (remote_port 0), the connections waiting to be accepted. 0 if none matches."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1].endswith(":%04X" % local_port) and fields[2].endswith(":%04X" % remote_port):
                return int(fields[4].split(":")[1], 16)
    return 0


def wait_file(path, text: str = "", timeout: float = 20.0, count: int = 1) -> str:
    """A file's text once it holds `text` `count` times (text "": once it is not empty)."""
    deadline = time.monotonic() + timeout
    data = ""
    while time.monotonic() < deadline:
        try:
            data = path.read_text(errors="replace")
        except FileNotFoundError:
            data = ""
        if data and data.count(text) >= count:
            return data
        time.sleep(0.05)
    raise AssertionError(f"{text!r} x{count} not in {path} after {timeout}s:\n{data}")


def parallel_get(port: int, paths, timeout: float = 20.0):
    """GET each path at once, one HTTP/1.0 connection and thread each: (the raw responses, the
    seconds until the last one)."""
    results = [None] * len(paths)

    def one(i, p):
        results[i] = raw(f"127.0.0.1:{port}", b"GET %b HTTP/1.0\r\n\r\n" % p.encode(), timeout=timeout)
    threads = [threading.Thread(target=one, args=(i, p)) for i, p in enumerate(paths)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.monotonic() - t0


def read_response(f):
    """Parse one HTTP response from a file-like (socket.makefile('rb')): (status, headers, body)."""
    head = read_head(f)
    if head is None:
        return None
    status, headers = head
    body = b""
    if status in (204, 304) or 100 <= status < 200:
        return status, headers, body
    if "content-length" in headers:
        body = f.read(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        while True:
            size = int(f.readline().strip(), 16)
            if size == 0:
                f.readline()
                break
            body += f.read(size)
            f.readline()
    else:
        body = f.read()
    return status, headers, body


def read_head(f):
    """The status line and headers of one HTTP response: (status, headers with lower-case
    names), None at EOF."""
    line = f.readline()
    if not line:
        return None
    status = int(line.split(b" ", 2)[1])
    headers = {}
    while True:
        h = f.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        k, v = h.split(b":", 1)
        headers[k.strip().lower().decode()] = v.strip().decode()
    return status, headers


def dechunk(data: bytes) -> bytes:
    """The payload of a chunked body held in memory."""
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


def uwsgi_packet(vars: dict, modifier1: int = 0, modifier2: int = 0, body: bytes = b"") -> bytes:
    """A uwsgi-protocol request: header, vars (str or bytes), body."""
    data = b""
    for k, v in vars.items():
        k = k.encode() if isinstance(k, str) else k
        v = v.encode() if isinstance(v, str) else v
        data += struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
    return struct.pack("<BHB", modifier1, len(data), modifier2) + data + body


def uwsgi_request(port, vars_: dict, body: bytes = b"", modifier1: int = 0, modifier2: int = 0,
                  host="127.0.0.1", timeout=10.0) -> bytes:
    """Send one uwsgi-protocol request; return the whole answer (until the server closes)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(uwsgi_packet(vars_, modifier1, modifier2, body))
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def uwsgi_http_get(port, path, modifier1, headers=None, timeout=10.0):
    """GET over the uwsgi protocol: (status int, body bytes)."""
    path_info, _, query = path.partition("?")
    vars_ = {"REQUEST_METHOD": "GET", "REQUEST_URI": path, "PATH_INFO": path_info, "QUERY_STRING": query,
             "SCRIPT_NAME": "", "SERVER_NAME": "localhost", "SERVER_PORT": str(port),
             "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "localhost"}
    for k, v in (headers or {}).items():
        vars_["HTTP_" + k.upper().replace("-", "_")] = v
    answer = uwsgi_request(port, vars_, modifier1=modifier1, timeout=timeout)
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    if b"transfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    return status, body
