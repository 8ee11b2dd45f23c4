"""Request log lines: uWSGI's default format, --memory-report, --log-format, --log-format-json,
-L with --log-4xx / --log-5xx / --log-slow."""

from __future__ import annotations

import json
import re
import time

from helpers import free_port, raw
from http_helpers import WorkerProc

DEFAULT = re.compile(
    r"^\[pid: (\d+)\|app: (-?\d+)\|req: (\d+)/(\d+)\] (\S*) \((.*?)\) \{(\d+) vars in (\d+) bytes\} "
    r"\[(\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4})\] (\S+) (\S+) => generated (\d+) bytes in (\d+) msecs "
    r"\((HTTP/1\.[01]) (\d{3})\) (\d+) headers in (\d+) bytes \((\d+) switches on core (\d+)\)$", re.M)


def lines_for(log: str, uri: str) -> list:
    return [m for m in DEFAULT.finditer(log) if m.group(11) == uri]


def wait_log(w, needle: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = w.log()
        if needle in text:
            return text
        time.sleep(0.05)
    return w.log()


def test_default_line_format():
    port = free_port()
    with WorkerProc({"http-socket": [f"127.0.0.1:{port}"]}) as w:
        resp = raw(f"127.0.0.1:{port}", b"GET /?x=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        head, body = resp.split(b"\r\n\r\n", 1)
        raw(f"127.0.0.1:{port}", b"GET /stream?n=4 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        log = wait_log(w, "/stream?n=4")
        [m] = lines_for(log, "/?x=1")
        assert m.group(2) == "0" and m.group(5) == "127.0.0.1" and m.group(6) == ""
        assert m.group(10) == "GET" and m.group(14) == "HTTP/1.1" and m.group(15) == "200"
        assert int(m.group(12)) == len(body) == 11
        assert int(m.group(17)) == len(head) + 4          # the whole head, status line included
        assert int(m.group(16)) == 1                      # the app's headers, as uWSGI counts
        assert int(m.group(7)) % 2 == 0                   # keys and values, as uWSGI counts
        assert m.group(18) == "1" and m.group(19) == "0"
        [s] = lines_for(log, "/stream?n=4")
        assert int(s.group(18)) == 5                      # 1 call + 4 resumptions
        assert int(s.group(3)) == int(m.group(3)) + 1


def test_503_logged_with_app_minus_one():
    port = free_port()
    with WorkerProc({"http-socket": [f"127.0.0.1:{port}"], "http-socket-modifier1": 7}) as w:
        raw(f"127.0.0.1:{port}", b"GET /x HTTP/1.0\r\n\r\n")
        [m] = lines_for(wait_log(w, "/x =>"), "/x")
        assert m.group(2) == "-1" and m.group(15) == "503"


def test_memory_report():
    port = free_port()
    with WorkerProc({"http-socket": [f"127.0.0.1:{port}"], "memory-report": True}) as w:
        raw(f"127.0.0.1:{port}", b"GET /m HTTP/1.0\r\n\r\n")
        log = wait_log(w, "GET /m")
        assert re.search(r"^\{address space usage: \d+ bytes/\d+MB\} \{rss usage: \d+ bytes/\d+MB\} \[pid: ",
                         log, re.M)


def test_log_format_vars():
    port = free_port()
    fmt = ("LF %(addr) %(method) %(uri) %(proto) %(status) %(size) %(rsize) %(hsize) %(msecs) %(micros) "
           "%(pid) %(wid) %(core) %(vars) %(headers) %(switches) %(host) %(uagent) %(referer) %(user) "
           "%(var.HTTP_X_CUSTOM) %(myvar) %(unknownvar) %(modifier1) %(cl) %(epoch) [%(ltime)] %(ctime) end")
    with WorkerProc({"http-socket": [f"127.0.0.1:{port}"], "log-format": fmt}) as w:
        raw(f"127.0.0.1:{port}", b"POST /logvar HTTP/1.0\r\nHost: hh\r\nUser-Agent: ua/1\r\nReferer: rr\r\n"
                                 b"X-Custom: cc\r\nContent-Length: 3\r\n\r\nabc")
        # this request's line (the harness's readiness probe, GET /pid, is logged too)
        log = wait_log(w, "LF 127.0.0.1 POST /logvar")
        line = [ln for ln in log.splitlines() if ln.startswith("LF ")][-1]
        f = line.split(" ")
        assert f[1:6] == ["127.0.0.1", "POST", "/logvar", "HTTP/1.0", "200"]
        assert int(f[6]) == int(f[7]) + int(f[8]) and f[7] == "2"
        assert f[11].isdigit() and f[12] == "1" and f[13] == "0"
        assert f[17:24] == ["hh", "ua/1", "rr", "-", "cc", "hello-logvar", "-"]
        assert f[24] == "0" and f[25] == "3"
        assert abs(int(f[26]) - time.time()) < 60
        assert line.endswith(" end")


def test_log_format_json():
    port = free_port()
    with WorkerProc({"http-socket": [f"127.0.0.1:{port}"], "log-format-json": True}) as w:
        raw(f"127.0.0.1:{port}", b"GET /logvar?j=1 HTTP/1.0\r\nHost: jj\r\n\r\n")
        log = wait_log(w, "/logvar?j=1")
        obj = [json.loads(ln) for ln in log.splitlines() if ln.startswith("{") and "/logvar?j=1" in ln][-1]
        assert obj["uri"] == "/logvar?j=1" and obj["status"] == 200 and obj["method"] == "GET"
        assert obj["host"] == "jj" and obj["myvar"] == "hello-logvar" and isinstance(obj["msecs"], int)


def test_disable_logging_with_4xx_5xx_filters():
    port = free_port()
    with WorkerProc({"http-socket": [f"127.0.0.1:{port}"], "disable-logging": True,
                     "log-5xx": True, "log-4xx": True}) as w:
        raw(f"127.0.0.1:{port}", b"GET /?quiet HTTP/1.0\r\n\r\n")
        raw(f"127.0.0.1:{port}", b"GET /error HTTP/1.0\r\n\r\n")
        raw(f"127.0.0.1:{port}", b"GET /missing/thing HTTP/1.0\r\n\r\n")
        log = wait_log(w, "/missing/thing")
        assert not lines_for(log, "/?quiet")
        assert lines_for(log, "/error")[0].group(15) == "500"
        assert lines_for(log, "/missing/thing")[0].group(15) == "404"


def test_disable_logging_with_slow():
    port = free_port()
    with WorkerProc({"http-socket": [f"127.0.0.1:{port}"], "disable-logging": True, "log-slow": 200}) as w:
        raw(f"127.0.0.1:{port}", b"GET /block?t=0.01 HTTP/1.0\r\n\r\n")
        raw(f"127.0.0.1:{port}", b"GET /block?t=0.4 HTTP/1.0\r\n\r\n")
        log = wait_log(w, "/block?t=0.4")
        assert lines_for(log, "/block?t=0.4") and not lines_for(log, "/block?t=0.01")
