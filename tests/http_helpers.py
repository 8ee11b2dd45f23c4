"""Test harness for the data plane (helper C): run real worker processes without the master.

`python tests/http_helpers.py '{"options": {...}, "processes": 1}'` binds with
uwsgid.net.sockets.bind_all, registers the test plugins below (modifier1 0 = TestPlugin,
6 = OtherPlugin, 7 = a plugin without an app), and runs uwsgid.server.worker.Worker(...).run()
(forking `processes` workers; the parent forwards signals and exits when they are done).

In tests: `with WorkerProc({"http-socket": [addr]}) as w: ...` (stopped by PID).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from helpers import PY, ROOT, START_TIMEOUT, Server, connect

# ---------------------------------------------------------------------------------------------
# The test plugins (imported in the child process)

def _plugins():
    from urllib.parse import parse_qs

    from uwsgid.plugins import api
    from uwsgid.plugins.contract import Plugin

    def qs(req):
        text = req.vars.get(b"QUERY_STRING", b"").decode("latin-1")
        return {k: v[0] for k, v in parse_qs(text, encoding="latin-1").items()}

    class TestPlugin(Plugin):
        name = "testapp"
        modifier1 = 0

        def has_app(self):
            return True

        def post_fork(self, worker):
            self.worker = worker

        def init_core(self, core):
            core.state[self.name] = {"inited": True}

        def request(self, req):
            path = req.vars[b"PATH_INFO"]
            q = qs(req)
            first = path.decode("latin-1").strip("/").split("/")[0]
            handler = getattr(self, "do_" + first.replace("-", "_"), None)
            if path == b"/":
                handler = self.do_index
            if handler is None:
                req.start_response(b"404 Not Found", [(b"Content-Type", b"text/plain")])
                req.write(b"not found\n")
                return None
            return handler(req, q)

        def do_index(self, req, q):
            req.start_response(b"200 OK", [(b"Content-Type", b"text/plain")])
            req.write(b"Hello World")

        def do_vars(self, req, q):
            body = json.dumps({k.decode("latin-1"): v.decode("latin-1") for k, v in req.vars.items()}).encode()
            req.start_response(b"200 OK", [(b"Content-Type", b"application/json")])
            req.write(body)

        def do_dump(self, req, q):
            import base64
            out = {"vars": {k.decode("latin-1"): v.decode("latin-1") for k, v in req.vars.items()},
                   "body": base64.b64encode(req.input.read()).decode(), "terminated": req.input_terminated}
            req.start_response(b"200 OK", [(b"Content-Type", b"application/json")])
            req.write(json.dumps(out).encode())

        def do_echo(self, req, q):
            n = int(q.get("n", "-1"))
            data = req.input.read(n) if n >= 0 else req.input.read()
            req.start_response(b"200 OK", [(b"Content-Type", b"application/octet-stream"),
                                           (b"X-Terminated", b"1" if req.input_terminated else b"0")])
            req.write(data)

        def do_lines(self, req, q):
            lines = list(req.input)
            req.start_response(b"200 OK", [(b"Content-Type", b"text/plain")])
            req.write(b"%d" % len(lines))

        def do_stream(self, req, q):
            n = int(q.get("n", "3"))

            def gen():
                req.start_response(b"200 OK", [(b"Content-Type", b"text/plain")])
                for i in range(n):
                    req.write(b"chunk%d\n" % i)
                    yield b""
            return gen()

        def do_slowstream(self, req, q):
            n = int(q.get("n", "10"))

            def gen():
                req.start_response(b"200 OK", [(b"Content-Type", b"text/plain")])
                for i in range(n):
                    req.write(b"slow%d\n" % i)
                    api.async_sleep(0.1)
                    yield b""
            return gen()

        def do_sleep(self, req, q):
            t = float(q.get("t", "0.5"))
            os.write(2, STARTED)

            def gen():
                api.async_sleep(t)
                yield b""
                req.start_response(b"200 OK", [(b"Content-Type", b"text/plain")])
                req.write(b"slept core=%d timed_out=%d" % (api.async_id(), api.is_timed_out()))
            return gen()

        def do_block(self, req, q):
            os.write(2, STARTED)
            time.sleep(float(q.get("t", "0.5")))
            req.start_response(b"200 OK", [(b"Content-Type", b"text/plain")])
            req.write(b"blocked core=%d" % api.async_id())

        def do_waitfd(self, req, q):
            r, w = os.pipe()

            def gen():
                api.wait_fd_read(r, 5)
                yield b""
                ok = api.ready_fd() == r
                os.close(r)
                os.close(w)
                req.start_response(b"200 OK", [(b"Content-Type", b"text/plain")])
                req.write(b"ready=%d" % ok)
            # the pipe becomes readable in 0.2 s: a timer on this core's loop writes to it
            api.current_core().loop.call_later(0.2, lambda: os.write(w, b"x"))
            return gen()

        def do_badfd(self, req, q):
            def gen():
                api.wait_fd_read(987654, 5)
                yield b""
                req.start_response(b"200 OK", [(b"Content-Type", b"text/plain")])
                req.write(b"timed_out=%d" % api.is_timed_out())
            return gen()

        def do_crlf(self, req, q):
            req.start_response(b"200 OK", [(b"X-Evil", b"a\r\nSet-Cookie: stolen=1")])
            req.write(b"never sent")

        def do_error(self, req, q):
            raise RuntimeError("boom in the app")

        def do_error_mid(self, req, q):
            def gen():
                req.start_response(b"200 OK", [(b"Content-Type", b"text/plain")])
                req.write(b"partial")
                yield b""
                raise RuntimeError("boom mid-stream")
            return gen()

        def do_error_mid_cl(self, req, q):
            def gen():
                req.start_response(b"200 OK", [(b"Content-Type", b"text/plain"), (b"Content-Length", b"100")])
                req.write(b"partial")
                yield b""
                raise RuntimeError("boom mid-body")
            return gen()

        def do_nostart(self, req, q):
            return None

        def do_cl(self, req, q):
            req.start_response(b"200 OK", [(b"Content-Type", b"text/plain"), (b"Content-Length", b"5")])

            def gen():
                req.write(b"he")
                yield b""
                req.write(b"llo")
            return gen()

        def do_big(self, req, q):
            n = int(q.get("n", "1000000"))
            req.start_response(b"200 OK", [(b"Content-Type", b"application/octet-stream")])
            block = b"x" * 65536
            while n > 0:
                req.write(block[:n])
                n -= 65536

        def do_sendfile(self, req, q):
            path = q["path"]
            fd = os.open(path, os.O_RDONLY)
            try:
                size = os.fstat(fd).st_size
                req.start_response(b"200 OK", [(b"Content-Type", b"application/octet-stream"),
                                               (b"Content-Length", b"%d" % size)])
                req.sendfile(fd, 0, size)
            finally:
                os.close(fd)

        def do_status(self, req, q):
            code = int(q.get("code", "200"))
            req.start_response(b"%d Whatever" % code, [(b"Content-Type", b"text/plain")])
            req.write(b"body-not-allowed" if code in (204, 304) else b"body")

        def do_logvar(self, req, q):
            api.set_logvar("myvar", "hello-logvar")
            req.start_response(b"200 OK", [(b"Content-Type", b"text/plain")])
            req.write(b"ok")

        def do_pid(self, req, q):
            req.start_response(b"200 OK", [(b"Content-Type", b"text/plain")])
            req.write(b"%d" % os.getpid())

        def do_svc(self, req, q):
            # a service reader (worker.add_reader) and call_soon from another thread
            os.write(_SVC["w"], b"x")
            threading.Thread(target=lambda: api.worker.call_soon(lambda: _SVC.__setitem__("soon", 1))).start()

            def gen():
                api.async_sleep(0.2)
                yield b""
                req.start_response(b"200 OK", [(b"Content-Type", b"text/plain")])
                req.write(b"reads=%d soon=%d" % (_SVC["reads"], _SVC["soon"]))
            return gen()

        def do_connclose(self, req, q):
            req.start_response(b"200 OK", [(b"Content-Type", b"text/plain"), (b"Connection", b"close")])
            n = int(q.get("n", "0"))
            req.write(b"y" * n if n else b"bye")

        def do_core(self, req, q):
            core = api.current_core()
            req.start_response(b"200 OK", [(b"Content-Type", b"text/plain")])
            req.write(json.dumps({"core": core.id, "state": core.state.get(self.name),
                                  "thread": core.thread.name}).encode())

    class OtherPlugin(Plugin):
        name = "other"
        modifier1 = 6
        seen: list = []   # after_request's records: [path, the response was out by then]

        def has_app(self):
            return True

        def request(self, req):
            path = req.vars.get(b"PATH_INFO", b"")
            if path == b"/after-seen":
                req.start_response(b"200 OK", [(b"Content-Type", b"application/json")])
                req.write(json.dumps(self.seen).encode())
                return None
            if path == b"/after-fail":
                raise RuntimeError("failing on purpose")
            if path == b"/after-stream":
                def gen():
                    req.start_response(b"200 OK", [(b"Content-Type", b"text/plain")])
                    for part in (b"a", b"b"):
                        req.write(part)
                        yield
                return gen()
            req.start_response(b"200 OK", [(b"Content-Type", b"text/plain")])
            req.write(b"other modifier1=%d modifier2=%d" % (req.modifier1, req.modifier2))

        def after_request(self, req):
            # request_done counts the request served (and closes a one-shot connection) once
            # the response went to the kernel
            self.seen.append([req.vars.get(b"PATH_INFO", b"").decode(), req.conn.served > 0])

    class NoAppPlugin(Plugin):
        name = "noapp"
        modifier1 = 7

        def has_app(self):
            return False

    return {0: TestPlugin(), 6: OtherPlugin(), 7: NoAppPlugin()}


_SVC = {"reads": 0, "soon": 0}

# logged when /sleep or /block starts: a test waits for it (w.wait_log(STARTED)) before it stops
# the worker, so the request is surely in flight (the log line comes only once it is done)
STARTED_TEXT = "test app: request in flight"
STARTED = STARTED_TEXT.encode() + b"\n"


def _service_hook(worker):
    r, w = os.pipe()
    _SVC["w"] = w

    def on_read():
        os.read(r, 100)
        _SVC["reads"] += 1
    worker.add_reader(r, on_read)


def _custom_loop(worker):
    """A minimal custom loop (what uwsgid.plugins.api.set_loop allows): select + a thread per connection."""
    import select
    import threading as th
    socks = {lst.sock: lst for lst in worker.listeners}
    threads = []
    while not worker.stopping:
        ready, _, _ = select.select(list(socks), [], [], 0.1)
        for s in ready:
            try:
                conn, addr = s.accept()
            except BlockingIOError:
                continue
            t = th.Thread(target=worker.serve_connection, args=(conn, addr, socks[s]))
            t.start()
            threads.append(t)
    for t in threads:
        t.join(10)
    return 0


class _Server:
    def __init__(self, opts, listeners, plugins):
        self.opts = opts
        self.listeners = listeners
        self.plugins = plugins
        self.scoreboard = None
        self.master_pid = os.getpid()
        self.numproc = 1


def child_main(config: dict) -> int:
    sys.path.insert(0, str(ROOT))
    import uwsgid.config.core_options  # noqa: F401  (declares the options)
    from uwsgid.config.options import Options, lookup
    from uwsgid.net import sockets
    from uwsgid.server.worker import Worker

    opts = Options()
    real = config.get("real_plugins", [])   # e.g. ["cffi", "lua"]: the project's plugins instead of the test ones
    real_plugins = {}
    for name in real:
        sys.path.insert(0, str(ROOT / "plugins" / name))
        from importlib import import_module

        from uwsgid.config.options import declare
        plugin = import_module(f"{name}_plugin").plugin
        declare(*plugin.options)
        real_plugins[plugin.modifier1] = plugin
    for name, value in config.get("options", {}).items():
        opt = lookup(name)
        if opt is None:
            raise SystemExit(f"unknown option {name}")
        for v in (value if isinstance(value, list) else [value]):
            opts.set(opt, v)
    try:
        listeners = sockets.bind_all(opts)
    except sockets.BindError as e:
        print(e, file=sys.stderr, flush=True)
        return 1
    info = [{"name": lst.name, "address": lst.address, "proto": lst.proto, "internal": lst.internal}
            for lst in listeners]
    print("LISTENERS " + json.dumps(info), flush=True)
    if config.get("custom_loop"):
        from uwsgid.plugins import api
        api.set_loop(_custom_loop)
    from uwsgid.util import hooks
    hooks.register("worker_start", _service_hook)
    server = _Server(opts, listeners, real_plugins or _plugins())
    for plugin in real_plugins.values():
        plugin.configure(opts, server)
    n = int(config.get("processes", 1))
    if n == 1:
        return Worker(1, server).run()
    children = []
    for wid in range(1, n + 1):
        pid = os.fork()
        if pid == 0:
            try:
                code = Worker(wid, server).run()
            except BaseException:
                import traceback
                traceback.print_exc()
                code = 1
            os._exit(code)
        children.append(pid)

    def forward(signum, frame):
        for c in children:
            try:
                os.kill(c, signum)
            except ProcessLookupError:
                pass
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, forward)
    codes = []
    for c in children:
        while True:
            try:
                _, status = os.waitpid(c, 0)
                break
            except InterruptedError:
                continue
        codes.append(os.waitstatus_to_exitcode(status))
    return max(codes) if codes else 0


# ---------------------------------------------------------------------------------------------
# The test-side controller

class WorkerProc(Server):
    """A worker process (or `processes` of them) serving the test plugins; stopped by PID.
    `listeners`: what the child bound (name, address, proto, internal), from its first stdout line."""

    def __init__(self, options: dict, processes: int = 1, log_path: Path | None = None, real_plugins=(),
                 custom_loop: bool = False):
        self.config = {"options": options, "processes": processes, "real_plugins": list(real_plugins),
                       "custom_loop": custom_loop}
        super().__init__([__file__, json.dumps(self.config)], binary=PY, log_path=log_path)
        self.listeners = []

    def start(self) -> "WorkerProc":
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=self._log, cwd=ROOT,
                                     start_new_session=True)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("LISTENERS "):
            self.stop()
            raise RuntimeError(f"worker did not start ({self.proc.returncode}): {line}\n{self.log()}")
        self.listeners = json.loads(line[len("LISTENERS "):])
        try:
            self._wait_ready()
        except Exception:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        # the listening sockets exist before the worker loop starts; a request proves it serves
        deadline = time.monotonic() + START_TIMEOUT
        for lst in self.listeners:
            if lst["proto"] != "http":
                continue
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"worker exited {self.proc.returncode}\n{self.log()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"worker never answered on {lst['address']}\n{self.log()}")
                try:
                    with connect(lst["address"], timeout=5) as s:
                        s.sendall(b"GET /pid HTTP/1.0\r\n\r\n")
                        if s.recv(100):
                            break
                except OSError:
                    pass
                time.sleep(0.05)
            break

    def address(self, i: int = 0) -> str:
        return self.listeners[i]["address"]

    def send_signal(self, sig) -> None:
        self.signal(sig)

    def wait(self, timeout: float = 10) -> int:
        return self.proc.wait(timeout)

    def stop(self, sig=None, timeout: float = 15.0) -> int | None:
        code = super().stop(sig, timeout)
        if self.proc is not None:
            self.proc.stdout.close()
        return code


if __name__ == "__main__":
    sys.exit(child_main(json.loads(sys.argv[1])))
