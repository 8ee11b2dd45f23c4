"""In-process test kit for the cffi plugin: a fake request implementing the request contract of
uwsgid/plugins/contract.py, a fake core, and `run()` which drives plugin.request() as the worker does."""

from __future__ import annotations

import io

import uwsgid.config.core_options  # noqa: F401  (declares the core options)
from uwsgid.config.options import Options, declare, lookup


class FakeCore:
    def __init__(self, id_=0):
        self.id = id_
        self.wait = None
        self.state = {}
        self.requests = 0
        self.request = None
        self.worker = None


class ShortReads(io.RawIOBase):
    """A body source that returns at most `step` bytes per read (like a socket)."""

    def __init__(self, data: bytes, step: int):
        self._data = data
        self._pos = 0
        self._step = step
        self.reads = 0

    def readable(self):
        return True

    def read(self, n=-1):
        self.reads += 1
        if n is None or n < 0:
            n = len(self._data)
        n = min(n, self._step)
        out = self._data[self._pos:self._pos + n]
        self._pos += len(out)
        return out


class FakeRequest:
    def __init__(self, path="/", method="GET", body=b"", headers=None, vars=None, chunked=False,
                 source=None, script_name=b""):
        path_b = path.encode("latin-1") if isinstance(path, str) else path
        pi, _, qs = path_b.partition(b"?")
        self.vars = {
            b"REQUEST_METHOD": method.encode(), b"REQUEST_URI": path_b, b"PATH_INFO": pi,
            b"QUERY_STRING": qs, b"SCRIPT_NAME": script_name, b"SERVER_NAME": b"localhost",
            b"SERVER_PORT": b"8080", b"SERVER_PROTOCOL": b"HTTP/1.1", b"REMOTE_ADDR": b"127.0.0.1",
            b"REMOTE_PORT": b"40000",
        }
        if body and not chunked:
            self.vars[b"CONTENT_LENGTH"] = str(len(body)).encode()
        for k, v in (headers or {}).items():
            key = b"HTTP_" + k.upper().replace("-", "_").encode()
            if k.lower() == "content-type":
                key = b"CONTENT_TYPE"
            self.vars[key] = v.encode("latin-1")
        if vars:
            self.vars.update(vars)
        self.modifier1 = 0
        self.modifier2 = 0
        self.input = source if source is not None else io.BytesIO(body)
        self.input_terminated = chunked
        self.core = FakeCore()
        self.logvars = {}
        self.ctx = None      # the per-request hook context (uwsgid.plugins.code): none here
        self.fd = -1
        # what the plugin gave us
        self.status = None
        self.headers = None
        self.chunks: list[bytes] = []
        self.sendfiles: list[tuple] = []
        self.headers_sent = False
        self.app_length = None
        self.start_calls = 0
        self.yields = 0

    def start_response(self, status, headers):
        assert isinstance(status, bytes), status
        for k, v in headers:
            assert isinstance(k, bytes) and isinstance(v, bytes), (k, v)
        self.start_calls += 1
        self.status = status
        self.headers = list(headers)
        cl = self.header(b"content-length")
        self.app_length = int(cl) if cl is not None else None   # as net.request.Request reads it

    def flush(self):
        pass    # what write() got is already "sent"

    def write(self, data):
        assert isinstance(data, bytes)
        assert self.status is not None, "write before start_response"
        self.chunks.append(data)

    def sendfile(self, fd, offset, count):
        import os
        self.sendfiles.append((fd, offset, count))
        self.chunks.append(os.pread(fd, count, offset))

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def header(self, name: bytes):
        for k, v in self.headers or ():
            if k.lower() == name.lower():
                return v
        return None


def make_opts(**values) -> Options:
    """Options with the cffi plugin's declarations registered."""
    from cffi_plugin.options import ENGINE_OPTIONS, OPTIONS
    declare(*OPTIONS, *ENGINE_OPTIONS)
    opts = Options()
    for name, value in values.items():
        opt = lookup(name.replace("_", "-"))
        assert opt is not None, name
        if opt.multi:
            for v in (value if isinstance(value, list) else [value]):
                opts.set(opt, v)
        else:
            opts.set(opt, value)
    return opts


class FakeServer:
    def __init__(self, opts):
        self.opts = opts
        self.master_pid = 1
        self.has_master = False
        self.numproc = int(opts.processes or 1)
        self.scoreboard = None
        self.version = "2.0.21-test"
        self.started_at = 0


def make_plugin(**options):
    """A fresh configured and set up CffiPlugin (not the module-level singleton). Set up even
    without an app option (which configure() alone leaves alone): tests add apps themselves."""
    from cffi_plugin import CffiPlugin
    from uwsgid.plugins import api
    opts = make_opts(**options)
    server = FakeServer(opts)
    api.server = server
    p = CffiPlugin()
    p.configure(opts, server)
    p.setup()
    return p


def run(plugin, req, max_steps=1_000_000):
    """plugin.request(req), then step a returned generator to the end, as the core does."""
    from uwsgid.plugins import api
    api.set_current(req.core)
    req.core.request = req
    req.core.wait = None            # reset when a request starts, as the core does
    try:
        gen = plugin.request(req)
        if gen is not None:
            req.core.wait = None    # a wait armed in request(): it fires before the first step
            for _ in gen:
                req.yields += 1
                req.core.wait = None
                if req.yields > max_steps:
                    raise AssertionError("too many yields")
    finally:
        api.set_current(None)
        req.core.request = None
    return req
