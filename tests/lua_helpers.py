"""In-process fakes for the Lua plugin's unit tests: a core, a worker and a request that follow
the contract in uwsgid/plugins/contract.py, and a driver that runs a request like the worker loop does."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

from uwsgid.plugins import api

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


class FakeWorker:
    def __init__(self, wid: int = 1, cores: int = 1):
        self.id = wid
        self.cores = cores


class FakeCore:
    def __init__(self, cid: int = 0, worker: FakeWorker | None = None):
        self.id = cid
        self.worker = worker or FakeWorker()
        self.state: dict = {}
        self.request = None
        self.requests = 0
        self.wait = None
        self.ready_fd = -1
        self.timed_out = False


class FakeInput:
    """req.input: the whole body in memory (the core's contract: fully received before dispatch)."""

    def __init__(self, body: bytes):
        self._b = io.BytesIO(body)

    def read(self, n: int = -1) -> bytes:
        return self._b.read(n if n is not None and n >= 0 else -1)

    def readline(self, limit: int = -1) -> bytes:
        return self._b.readline(limit)

    def readlines(self):
        return self._b.readlines()

    def __iter__(self):
        return iter(self._b)


class FakeRequest:
    def __init__(self, core: FakeCore, path: str = "/", method: str = "GET", body: bytes = b"",
                 query: str = "", headers: dict | None = None, script_name: str = "",
                 content_type: str | None = None):
        self.core = core
        v = {
            b"REQUEST_METHOD": method.encode(),
            b"REQUEST_URI": (script_name + path + (("?" + query) if query else "")).encode(),
            b"PATH_INFO": path.encode(),
            b"QUERY_STRING": query.encode(),
            b"SCRIPT_NAME": script_name.encode(),
            b"SERVER_NAME": b"localhost",
            b"SERVER_PORT": b"8080",
            b"SERVER_PROTOCOL": b"HTTP/1.1",
            b"REMOTE_ADDR": b"127.0.0.1",
            b"REMOTE_PORT": b"40000",
            b"HTTP_HOST": b"localhost:8080",
        }
        if body or method in ("POST", "PUT"):
            v[b"CONTENT_LENGTH"] = str(len(body)).encode()
        if content_type:
            v[b"CONTENT_TYPE"] = content_type.encode()
        for k, val in (headers or {}).items():
            v[("HTTP_" + k.upper().replace("-", "_")).encode()] = val.encode()
        self.vars = v
        self.vars_block = None
        self.modifier1 = 6
        self.modifier2 = 0
        self.input = FakeInput(body)
        self.input_terminated = False
        self.status: bytes | None = None
        self.headers: list = []
        self.chunks: list[bytes] = []
        self.flushes = 0
        self.headers_sent = False
        self.logvars: dict = {}
        self.fd = -1

    def start_response(self, status: bytes, headers):
        assert not self.headers_sent, "start_response after headers went out"
        assert isinstance(status, bytes)
        for k, v in headers:
            assert isinstance(k, bytes) and isinstance(v, bytes)
        self.status = status
        self.headers = list(headers)

    def write(self, data: bytes):
        assert isinstance(data, bytes)
        assert self.status is not None, "write before start_response"
        self.headers_sent = True
        self.chunks.append(data)

    def sendfile(self, fd, offset, count):
        os.lseek(fd, offset, 0)
        self.write(os.read(fd, count))

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def header(self, name: str):
        for k, v in self.headers:
            if k.lower() == name.lower().encode():
                return v
        return None


class Result:
    def __init__(self, req, exc=None, yields=0, waits=0):
        self.req = req
        self.status = req.status
        self.body = req.body
        self.exc = exc
        self.yields = yields
        self.waits = waits


def run_request(plugin, core: FakeCore, req: FakeRequest, honour_waits: bool = True) -> Result:
    """Drive plugin.request(req) to the end like a worker loop with a single core: waits armed
    by the app (in request() or in a step: either suspends the core before the next step) are
    slept through (sleep) or counted. An exception is captured, not raised."""
    core.request = req
    core.wait = None                       # the worker resets it when a request starts
    api.set_current(core)
    yields = waits = 0
    exc = None
    gen = None
    try:
        gen = plugin.request(req)
        if gen is not None:
            while True:
                if core.wait is not None:
                    waits += 1
                    w = core.wait
                    core.wait = None       # it fired
                    if honour_waits and w.timeout and w.fd < 0:
                        time.sleep(w.timeout)
                try:
                    next(gen)
                except StopIteration:
                    break
                yields += 1
    except Exception as e:  # the core would log it and truncate / 500
        exc = e
    finally:
        if gen is not None and hasattr(gen, "close"):
            gen.close()                    # the core closes a generator it stops early
        plugin.after_request(req)          # and calls this once the response is out
        core.requests += 1
        core.request = None
        api.set_current(None)
    return Result(req, exc, yields, waits)


# ---- Sputnik: its edit form, filled in and posted like a browser -----------------------------

from html.parser import HTMLParser  # noqa: E402


class EditForm(HTMLParser):
    """The fields of Sputnik's edit form (<form class="edit">): inputs, textareas, buttons."""

    def __init__(self, html: str):
        super().__init__()
        self.action = None
        self.fields: list[list[str]] = []    # [name, value]
        self.labels: dict[str, str] = {}     # textarea name -> its class
        self._in_form = False
        self._textarea = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and "edit" in (a.get("class") or "").split():
            self._in_form = True
            self.action = a.get("action", "/")
        elif not self._in_form:
            return
        elif tag == "input" and a.get("name") and a.get("type") not in ("image", "submit"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return  # a browser sends only checked boxes
            self.fields.append([a["name"], a.get("value") or ""])
        elif tag == "textarea" and a.get("name"):
            self._textarea = [a["name"], ""]
            self.labels[a["name"]] = a.get("class") or ""
            self.fields.append(self._textarea)

    def handle_endtag(self, tag):
        if tag == "form":
            self._in_form = False
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data):
        if self._textarea is not None:
            self._textarea[1] += data

    def content_field(self) -> str:
        """The page text's textarea (the markitup editor)."""
        for name, cls in self.labels.items():
            if "editor_markitup" in cls:
                return name
        raise AssertionError("no content textarea in the edit form")

    def set(self, name: str, value: str) -> None:
        for f in self.fields:
            if f[0] == name:
                f[1] = value
                return
        self.fields.append([name, value])

    def multipart(self, button: str = "action_save") -> tuple[bytes, str]:
        boundary = "----uwsgidLuaTestBoundary7MA4YWxkTrZu0gW"
        out = []
        for name, value in self.fields + [[button, ""]]:
            out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n')
        out.append(f"--{boundary}--\r\n")
        return "".join(out).encode(), f"multipart/form-data; boundary={boundary}"
