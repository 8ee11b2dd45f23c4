"""Request log lines: uWSGI's default line (uwsgi_logit_simple), --log-format with uWSGI's %(var)
names, --log-format-json, and the filters -L / --log-4xx / --log-5xx / --log-slow.

Default line, byte for byte as uWSGI 2.0 prints it:
[pid: 1234|app: 0|req: 1/1] 127.0.0.1 () {28 vars in 315 bytes} [Sat Nov 21 20:50:11 2026] GET / => generated 79 bytes in 0 msecs (HTTP/1.1 200) 2 headers in 79 bytes (1 switches on core 0)
("vars" counts keys and values, as uWSGI's iovec count does; the byte figure is the uwsgi
packet size of the vars.) A file body sent by sendfile or an offload thread (static files,
wsgi.file_wrapper) shows as "in 0 msecs via sendfile() (HTTP/1.1 200)" / "via offload()".
"""

from __future__ import annotations

import os
import time

from uwsgid.config.options import value as option_value
from uwsgid.net.request import VIA_SENDFILE
from uwsgid.util.log import log_request
from uwsgid.util.memory import rss_vsz

_ctime_cache = [-1, b""]


def ctime(t: float) -> bytes:
    """time.ctime as bytes, computed once per second (every log line needs it)."""
    sec = int(t)
    c = _ctime_cache
    if c[0] != sec:
        c[1] = time.ctime(sec).encode()
        c[0] = sec
    return c[1]


def _b(value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace")
    return str(value).encode()


def _var(name: bytes):
    return lambda req, w: req.vars.get(name, b"")


_ltime_cache = [-1, b""]


def _ltime(req, w) -> bytes:
    sec = int(req.start_wall)
    c = _ltime_cache
    if c[0] != sec:
        c[1] = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(sec)).encode()
        c[0] = sec
    return c[1]


def _rt_us(req) -> int:
    return int((req.end - req.start) * 1_000_000)


# uWSGI's log-format names (core/logging.c uwsgi_register_logchunks + the offsetof ones).
CHUNKS = {
    "uri": _var(b"REQUEST_URI"),
    "method": _var(b"REQUEST_METHOD"),
    "user": _var(b"REMOTE_USER"),
    "addr": _var(b"REMOTE_ADDR"),
    "host": _var(b"HTTP_HOST"),
    "proto": _var(b"SERVER_PROTOCOL"),
    "uagent": _var(b"HTTP_USER_AGENT"),
    "referer": _var(b"HTTP_REFERER"),
    "status": lambda req, w: b"%d" % req.status,
    "rsize": lambda req, w: b"%d" % req.response_size,
    "hsize": lambda req, w: b"%d" % req.headers_size,
    "size": lambda req, w: b"%d" % (req.headers_size + req.response_size),
    "cl": lambda req, w: b"%d" % req.post_cl,
    "epoch": lambda req, w: b"%d" % int(time.time()),
    "ctime": lambda req, w: ctime(req.start_wall),
    "time": lambda req, w: b"%d" % int(req.start_wall),
    "ltime": _ltime,
    "ftime": _ltime,
    "tmsecs": lambda req, w: b"%d" % int(req.start_wall * 1000),
    "tmicros": lambda req, w: b"%d" % int(req.start_wall * 1_000_000),
    "micros": lambda req, w: b"%d" % _rt_us(req),
    "msecs": lambda req, w: b"%d" % (_rt_us(req) // 1000),
    "secs": lambda req, w: b"%f" % (req.end - req.start),
    "pid": lambda req, w: b"%d" % os.getpid(),
    "wid": lambda req, w: b"%d" % w.id,
    "switches": lambda req, w: b"%d" % req.switches,
    "vars": lambda req, w: b"%d" % req.var_cnt,
    "headers": lambda req, w: b"%d" % req.header_cnt,
    "core": lambda req, w: b"%d" % (req.core.id if req.core is not None else 0),
    "vsz": lambda req, w: b"%d" % rss_vsz()[1],
    "rss": lambda req, w: b"%d" % rss_vsz()[0],
    "vszM": lambda req, w: b"%d" % (rss_vsz()[1] // 1048576),
    "rssM": lambda req, w: b"%d" % (rss_vsz()[0] // 1048576),
    "pktsize": lambda req, w: b"%d" % req.pktsize,
    "modifier1": lambda req, w: b"%d" % req.modifier1,
    "modifier2": lambda req, w: b"%d" % req.modifier2,
    "werr": lambda req, w: b"%d" % write_errors(req),
    "rerr": lambda req, w: b"0",
    "ioerr": lambda req, w: b"%d" % write_errors(req),
}


def write_errors(req) -> int:
    """1 when the client went away (a failed or timed-out write) before the response was out:
    the connection was closed before the request ended, not by its end (which sets `closing`)."""
    conn = req.conn
    if conn is None or not conn.closed or conn.closing:
        return 0
    try:
        if conn.thread_loop.worker.stopping:     # a graceful stop closes idle keep-alive ones
            return 0
    except AttributeError:
        pass
    return 1


def _xff_addr(req, w) -> bytes:
    """--log-x-forwarded-for: the header as the client address (uWSGI takes it whole)."""
    v = req.vars
    return v.get(b"HTTP_X_FORWARDED_FOR") or v.get(b"REMOTE_ADDR", b"")


def _ftime(fmt: str):
    """%(ftime) with --logformat-strftime: the request's start in --log-date's format."""
    def get(req, w):
        return time.strftime(fmt, time.localtime(int(req.start_wall))).encode("utf-8", "backslashreplace")
    return get


_FMT = r"%\(([^)]+)\)"     # re is imported by compile_format: importing this module does without it


# Prefixed %(PREFIX.name) variables that services provide (uwsgid.services adds "metric"):
# prefix -> fn(name) returning the value as bytes, b"" when unknown. The log reads them through
# this table so that it never imports a service.
PREFIXED: dict = {}


WITH_REQUEST: set = set()   # the prefixes whose fn takes the request too: fn(name, req)


def provide(prefix: str, fn, with_request: bool = False) -> None:
    """Serve %(PREFIX.name) in --log-format with fn(name) -> bytes (fn(name, req) with_request)."""
    PREFIXED[prefix] = fn
    if with_request:
        WITH_REQUEST.add(prefix)


def _prefixed(fn, name: str, with_request: bool = False):
    def get(req, w):
        try:
            return fn(name, req) if with_request else fn(name)
        except Exception:
            return b""
    return get


def _logvar(name: str):
    key = name.encode()

    def get(req, w):
        lv = req.logvars
        return _b(lv.get(name, lv.get(key, b""))) if lv else b""
    return get


def chunk(name: str):
    """The value function for one %(name)."""
    fn = CHUNKS.get(name)
    if fn is not None:
        return fn
    if name.startswith("var."):
        return _var(name[4:].encode())
    prefix, dot, rest = name.partition(".")
    if dot and prefix in PREFIXED:
        return _prefixed(PREFIXED[prefix], rest, prefix in WITH_REQUEST)
    return _logvar(name)


def compile_format(fmt: str) -> list:
    """'%(addr) - %(method)' -> [fn, b' - ', fn]"""
    parts: list = []
    pos = 0
    import re
    for m in re.finditer(_FMT, fmt):
        if m.start() > pos:
            parts.append(fmt[pos:m.start()].encode())
        parts.append((m.group(1), chunk(m.group(1))))
        pos = m.end()
    if pos < len(fmt):
        parts.append(fmt[pos:].encode())
    return parts


JSON_FIELDS = ("pid", "wid", "core", "addr", "user", "method", "uri", "proto", "status", "msecs", "micros",
               "size", "hsize", "rsize", "headers", "vars", "pktsize", "switches", "modifier1", "modifier2",
               "host", "uagent", "referer", "time")
_NUMERIC = {"pid", "wid", "core", "status", "msecs", "micros", "size", "hsize", "rsize", "headers", "vars",
            "pktsize", "switches", "modifier1", "modifier2", "time", "cl", "epoch", "tmsecs", "tmicros",
            "vsz", "rss", "vszM", "rssM"}


def _true(value) -> bool:
    """uWSGI's uwsgi_opt_true on a value: set unless false/off/no/0."""
    if value is None or value is False:
        return False
    return str(value).strip().lower() not in ("false", "off", "no", "0")


_VIA = (b" ", b" via sendfile() ", b" via route() ", b" via offload() ")   # by Request.via


class RequestLogger:
    """Writes (or skips) the log line of each finished request."""

    def __init__(self, opts, worker):
        def get(name, default):
            return option_value(opts, name, default)
        self.worker = worker
        self.disabled = bool(get("disable_logging", False))
        self.log_4xx = bool(get("log_4xx", False))
        self.log_5xx = bool(get("log_5xx", False))
        self.log_slow = int(get("log_slow", 0) or 0)
        self.memory = bool(get("memory_report", False))
        self.log_zero = bool(get("log_zero", False))
        self.log_big = int(get("log_big", 0) or 0)
        self.log_ioerror = bool(get("log_ioerror", False))
        self.log_sendfile = _true(get("log_sendfile", None))
        self.micros = bool(get("log_micros", False))
        self.xff = bool(get("log_x_forwarded_for", False))
        date = get("log_date", None)
        strftime_fmt = date if date and date.strip().lower() not in ("true", "1", "on", "yes") else None
        ftime = _ftime(strftime_fmt) if strftime_fmt and get("logformat_strftime", False) else None
        self.vhost = bool(get("vhost", False) or get("vhost_host", False))   # lines start with the host
        fmt = get("log_format", None)
        self.parts = compile_format(fmt) if fmt else None
        if self.parts and (self.xff or ftime):
            swap = {"addr": _xff_addr if self.xff else None, "ftime": ftime}
            self.parts = [(p[0], swap.get(p[0]) or p[1]) if isinstance(p, tuple) else p for p in self.parts]
        self.json = bool(get("log_format_json", False))
        if self.json:
            import json  # only --log-format-json needs it: not carried into every worker
            self._dumps = json.dumps
            names = [p[0] for p in self.parts if isinstance(p, tuple)] if self.parts else list(JSON_FIELDS)
            self.json_fields = [(n, _xff_addr if n == "addr" and self.xff else chunk(n)) for n in names]

    def for_worker(self, worker) -> "RequestLogger":
        """The same settings for `worker`: a copy, not a new reading of the options (the
        master makes the first one before it forks: uwsgid.server.worker_settings)."""
        twin = object.__new__(type(self))
        twin.__dict__.update(self.__dict__)
        twin.worker = worker
        return twin

    @property
    def silent(self) -> bool:
        """No request is ever logged (--disable-logging and none of its exceptions)."""
        return self.disabled and not (self.log_4xx or self.log_5xx or self.log_slow or self.log_zero
                                      or self.log_big or self.log_ioerror or self.log_sendfile)

    @property
    def plain(self) -> bool:
        """Every request gets default_line with nothing added (what the native lane writes itself)."""
        return not (self.disabled or self.json or self.parts is not None or self.vhost or self.memory or self.xff)

    def __call__(self, req) -> None:
        if self.disabled:
            st = req.status
            if not ((self.log_4xx and 400 <= st < 500) or (self.log_5xx and st >= 500)
                    or (self.log_slow and (req.end - req.start) * 1000 > self.log_slow)
                    or (self.log_zero and req.response_size == 0)
                    or (self.log_big and req.response_size >= self.log_big)
                    or (self.log_ioerror and write_errors(req))
                    or (self.log_sendfile and req.via == VIA_SENDFILE)):
                return
        if self.json:
            line = self.json_line(req)
        elif self.parts is not None:
            line = self.format_line(req)
        else:
            line = self.default_line(req)
        log_request(line)

    def default_line(self, req) -> bytes:
        w = self.worker
        v = req.vars
        total = w.total_requests()
        mem = b""
        if self.memory:
            rss, vsz = rss_vsz()
            mem = b"{address space usage: %d bytes/%dMB} {rss usage: %d bytes/%dMB} " % (
                vsz, vsz // 1048576, rss, rss // 1048576)
        if self.vhost:
            mem = (v.get(b"HTTP_HOST") or v.get(b"SERVER_NAME", b"")) + b" " + mem
        return mem + b"[pid: %d|app: %d|req: %d/%d] %b (%b) {%d vars in %d bytes} [%b] %b %b => generated %d bytes in %d %b%b(%b %d) %d headers in %d bytes (%d switches on core %d)" % (
            w.pid, req.app_id, w.requests, total,
            (v.get(b"HTTP_X_FORWARDED_FOR") if self.xff else None) or v.get(b"REMOTE_ADDR", b""),
            v.get(b"REMOTE_USER", b""),
            req.var_cnt, req.pktsize, ctime(req.start_wall), req.method,
            v.get(b"REQUEST_URI", b""), req.response_size,
            int((req.end - req.start) * (1_000_000 if self.micros else 1000)), b"micros" if self.micros else b"msecs",
            _VIA[req.via],
            v.get(b"SERVER_PROTOCOL", b"HTTP/1.1"), req.status, req.header_cnt, req.headers_size,
            req.switches, req.core.id if req.core is not None else 0)

    def format_line(self, req) -> bytes:
        w = self.worker
        out = []
        for p in self.parts:
            if isinstance(p, bytes):
                out.append(p)
            else:
                value = p[1](req, w)
                out.append(value if value else b"-")
        return b"".join(out)

    def json_line(self, req) -> bytes:
        w = self.worker
        obj = {}
        for name, fn in self.json_fields:
            value = fn(req, w).decode("utf-8", "backslashreplace")
            if name in _NUMERIC:
                try:
                    obj[name] = int(value)
                    continue
                except ValueError:
                    pass
            obj[name] = value
        for k, val in (req.logvars or {}).items():
            key = k.decode("utf-8", "backslashreplace") if isinstance(k, bytes) else str(k)
            obj.setdefault(key, _b(val).decode("utf-8", "backslashreplace"))
        return self._dumps(obj, separators=(",", ":")).encode()
