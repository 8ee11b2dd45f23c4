"""Helpers for the master/stats tests: a tiny test plugin (modifier1 250) and a launcher that runs
uwsgid.main.main with it, so that process-lifecycle tests do not depend on a language plugin.

    python tests/master_helpers.py ARGS...      behaves as ./uwsgi ARGS (plus the test plugin)

Endpoints (PATH_INFO): /            "hello"
                       /info       "pid=N master=N loaded=T" (loaded changes when apps reload)
                       /sleep?S    sleeps S seconds (blocking: harakiri, in-flight tests; logs IN_FLIGHT)
                       /crash      the worker SIGKILLs itself
                       /stream?N   N chunks without Content-Length (router re-framing)
                       /echo       echoes the request body and some vars
MASTERTEST_FAIL=1 in the environment makes configure() raise AppLoadError (exit 22 test);
MASTERTEST_FAIL_POSTFORK=1 makes post_fork() raise it (an app failing in the worker, --lazy-apps).
MASTERTEST_POSTFORK_SLEEP=S makes post_fork() take S seconds (a worker slow to start accepting).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT, ROOT / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from uwsgid.plugins.contract import AppLoadError, Plugin  # noqa: E402

MODIFIER1 = 250
# logged when /sleep starts: tests wait for it (srv.wait_log(IN_FLIGHT)) before they signal the
# master, so the request is surely in the worker (a fixed sleep is not enough on a loaded machine)
IN_FLIGHT = "mastertest: request in flight"
PYTHON = sys.executable
HERE = Path(__file__).resolve()


class MasterTestPlugin(Plugin):
    name = "mastertest"
    modifier1 = MODIFIER1
    options = []

    def __init__(self):
        self.loaded = 0.0

    def configure(self, opts, server) -> None:
        if os.environ.get("MASTERTEST_FAIL"):
            raise AppLoadError("mastertest: unable to load app from /nonexistent/app.py\n"
                               "FileNotFoundError: /nonexistent/app.py")
        self.loaded = time.time()

    def post_fork(self, worker) -> None:
        if os.environ.get("MASTERTEST_FAIL_POSTFORK"):
            raise AppLoadError("mastertest: unable to load app in the worker (lazy-apps)")
        time.sleep(float(os.environ.get("MASTERTEST_POSTFORK_SLEEP", "0")))

    def has_app(self) -> bool:
        return True

    def request(self, req):
        path = req.vars.get(b"PATH_INFO", b"/")
        qs = req.vars.get(b"QUERY_STRING", b"")
        if path == b"/sleep":
            os.write(2, IN_FLIGHT.encode() + b"\n")
            time.sleep(float(qs or b"1"))
            return self._reply(req, b"slept %s" % qs)
        if path == b"/info":
            return self._reply(req, b"pid=%d master=%d loaded=%r" % (os.getpid(), os.getppid(), self.loaded))
        if path == b"/crash":
            os.kill(os.getpid(), signal.SIGKILL)
        if path == b"/stream":
            return self._stream(req, int(qs or b"3"))
        if path == b"/echo":
            body = req.input.read()
            info = b"%s %s %s m1=%d m2=%d body=" % (
                req.vars.get(b"REQUEST_METHOD", b""), req.vars.get(b"REQUEST_URI", b""),
                req.vars.get(b"HTTP_X_TEST", b"-"), req.modifier1, req.modifier2)
            return self._reply(req, info + body)
        return self._reply(req, b"hello")

    @staticmethod
    def _reply(req, body: bytes):
        req.start_response(b"200 OK", [(b"Content-Type", b"text/plain"), (b"Content-Length", str(len(body)).encode())])
        req.write(body)
        return None

    @staticmethod
    def _stream(req, n: int):
        req.start_response(b"200 OK", [(b"Content-Type", b"text/plain")])
        for i in range(n):
            req.write(b"chunk%d;" % i)
            yield b""


plugin = MasterTestPlugin()


def get(port: int, path: str = "/", timeout: float = 20.0, method: str = "GET", body=None, headers=None):
    """One request on a new connection: (status, body bytes)."""
    from helpers import http_request  # here: the launched server process does not need it
    status, _, data = http_request(port, method, path, body, headers, timeout=timeout)
    return status, data


def info(port: int) -> dict:
    """/info of the test plugin as a dict: pid, master, loaded."""
    status, body = get(port, "/info")
    assert status == 200, body
    return dict(kv.split("=", 1) for kv in body.decode().split())


def read_stats(addr, http: bool = False) -> bytes:
    """The raw stats document from a tcp port or a unix socket path."""
    import socket
    if isinstance(addr, int):
        s = socket.create_connection(("127.0.0.1", addr), timeout=10)
    else:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(str(addr))
    with s:
        if http:
            s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk


def command(*args) -> list[str]:
    """The argv that runs the server with the test plugin."""
    return [PYTHON, str(HERE), *map(str, args)]


def launch(args, log_path: Path, env=None, cwd=ROOT):
    """The server with the test plugin (`command()` ARGS), started in its own session, stopped by PID;
    the caller waits for what it expects (`.wait_port(port)`, `.wait_log(text)`, an exit code)."""
    from helpers import Server
    full = dict(env or {})
    inherited = full.get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    full["PYTHONPATH"] = os.pathsep.join([str(ROOT), inherited]).rstrip(os.pathsep)
    return Server(args, command=command(), log_path=log_path, env=full, cwd=cwd, wait=False).start()


if __name__ == "__main__":
    from uwsgid import main as _main
    from uwsgid.server import reexec
    reexec.launcher = command()
    if os.environ.get("MASTERTEST_NO_REEXEC"):      # a binary that cannot be exec'd again
        reexec.launcher = ["/nonexistent/uwsgi-binary"]
    sys.exit(_main.main(sys.argv[1:], extra_plugins=[plugin]))
