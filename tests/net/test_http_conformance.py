"""The HTTP/1.1 conformance corpus (tests/net/http_corpus.py), run:

- in-process, through HttpParser: each case whole, byte by byte, cut at random, and behind a
  pipelined request (the exact path must find where a request starts in any read);
- against real servers: --http-socket and the --http router, each in front of the Python (WSGI)
  and the Lua (WSAPI) echo app: the four give the same answers (the router re-frames a chunked
  body with its length), and every refusal writes its one log line `STATUS PEER REASON`.

Plus docs/ERRORS.md: every row's log text occurs (driven here, or by the corpus), and the
rate limit of those lines.
"""

from __future__ import annotations

import collections
import io
import random
import re
import socket
import struct
import threading
import time
from pathlib import Path

import pytest
from helpers import ROOT, UWSGI, Server, connect, free_port, raw, read_response, recv_all, uwsgi_packet
from http_corpus import CORPUS, Case, get

HERE = Path(__file__).resolve().parent
HOSTNAME = socket.gethostname().encode()
LIMIT_POST = 100000
PEER = "127.0.0.1:5000"      # the in-process connection's peer


# ---- comparing what the app saw with the case -------------------------------------------

def _expected(case: Case):
    """[(status, env, headers, body)] for the responses of a case, in order."""
    first = (case.status, case.env, case.headers, case.body)
    return [first] + [tuple(m) for m in case.more]


def _problems(exp, vars_: dict, body: bytes, routed: bool, port: int | None = None) -> list[str]:
    """What differs between an expected response (status 200) and the vars/body the app saw."""
    _, env, headers, want_body = exp
    env = dict(env or {})
    headers = None if headers is None else dict(headers)
    vars_ = {k: v for k, v in vars_.items()
             if not (k in ("CONTENT_TYPE", "CONTENT_LENGTH") and v == b"")}   # WSAPI's defaults
    if headers is not None and "HTTP_TRANSFER_ENCODING" in headers and routed:
        # the router reads a chunked body whole and sends it on with its length
        del headers["HTTP_TRANSFER_ENCODING"]
        env["CONTENT_LENGTH"] = b"%d" % len(want_body)
    out = []
    for k, v in env.items():
        if vars_.get(k) != v:
            out.append(f"{k}: {vars_.get(k)!r} != {v!r}")
    if headers is not None:
        got = {k: v for k, v in vars_.items() if k.startswith("HTTP_")}
        if got != headers:
            out.append(f"HTTP_*: {got!r} != {headers!r}")
    if body != want_body:
        out.append(f"body: {body[:80]!r} != {want_body[:80]!r}")
    if vars_.get("SCRIPT_NAME") != b"" or vars_.get("SERVER_NAME") != HOSTNAME:
        out.append(f"SCRIPT_NAME/SERVER_NAME: {vars_.get('SCRIPT_NAME')!r} {vars_.get('SERVER_NAME')!r}")
    if port is not None and vars_.get("SERVER_PORT") != b"%d" % port:
        out.append(f"SERVER_PORT {vars_.get('SERVER_PORT')!r} != {port}")
    if vars_.get("REMOTE_ADDR") != b"127.0.0.1":
        out.append(f"REMOTE_ADDR {vars_.get('REMOTE_ADDR')!r}")
    if (vars_.get("UWSGI_ROUTER") == b"http") != routed:
        out.append(f"UWSGI_ROUTER {vars_.get('UWSGI_ROUTER')!r}")
    return out


# ---- in-process ---------------------------------------------------------------------------

class _Listener:
    modifier1 = 0
    modifier2 = 0
    port = 8080


class _Conn:
    fd = -1
    peer = PEER

    def __init__(self):
        self.queue = collections.deque()
        self.sent = []

    def send(self, data):
        self.sent.append(bytes(data))


@pytest.fixture
def rejects(monkeypatch):
    """The reject lines the parsers log, collected (and not rate-limited)."""
    from uwsgid.net import protocols
    lines = []
    monkeypatch.setattr(protocols._rejects, "write", lines.append)
    monkeypatch.setattr(protocols._rejects, "per_second", 10 ** 9)
    monkeypatch.setattr(protocols, "_tag", "")
    return lines


def _parse(pieces) -> tuple[list, list]:
    """Feed the pieces to an HttpParser: ([(status, vars, body)] as a connection would answer
    them, the 100 Continue interim replies sent)."""
    from uwsgid.net.protocols import Limits
    from uwsgid.net.protocols.http import HttpParser
    conn = _Conn()
    p = HttpParser(conn, _Listener, Limits(limit_post=LIMIT_POST), b"127.0.0.1", b"5000")
    for piece in pieces:
        p.feed(piece)
    out = []
    for r in conn.queue:
        out.append((200, {k.decode("latin-1"): v for k, v in r.vars.items()}, r.input.read()))
        if not r.keepalive:     # the connection closes after this response
            return out, conn.sent
    if p.error is not None:
        out.append((p.error.status, None, b""))
    elif p.partial or not out:
        out.append((0, None, b""))     # no answer: the server closes when the client does
    return out, conn.sent


def _check_in_process(case: Case, pieces, prefix: list, lines: list) -> list[str]:
    got, sent = _parse(pieces)
    exp = prefix + _expected(case)
    out = []
    if [g[0] for g in got] != [e[0] for e in exp]:
        return [f"statuses {[g[0] for g in got]} != {[e[0] for e in exp]}"]
    for g, e in zip(got, exp):
        if g[0] == 200:
            out += _problems(e, g[1], g[2], routed=False)
    if case.interim != any(s.startswith(b"HTTP/1.1 100 Continue") for s in sent):
        out.append(f"100 Continue sent: {sent!r}")
    logged = [line for line in lines if line.startswith(tuple(f"{s} " for s in (400, 413, 414, 431, 501, 505)))]
    if case.status not in (0, 200):
        want = f"{case.status} {PEER} {case.log}"
        if logged != [want]:
            out.append(f"log {logged!r} != [{want!r}]")
    elif not case.more and logged:
        out.append(f"logged {logged!r} for a request that is served")
    return out


def _cuts(data: bytes, rnd: random.Random) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        n = rnd.randint(1, 23)
        out.append(data[i:i + n])
        i += n
    return out


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_corpus_in_process(case, rejects):
    """Each case: in one read, byte by byte, cut at random, and after a pipelined request in the
    same read (so the exact path must find where the case starts)."""
    data = case.raw
    big = len(data) > 20000
    variants = {"whole": ([data], [])}
    if not big:
        variants["bytes"] = ([data[i:i + 1] for i in range(len(data))], [])
    for seed in range(3):
        variants[f"random{seed}"] = (_cuts(data, random.Random(seed)), [])
    before = get(b"/before")
    first = [(200, {"PATH_INFO": b"/before"}, None, b"")]
    variants["pipelined"] = ([before + data], first)
    variants["pipelined-cut"] = ([before + data[:7], data[7:]], first)
    post = b"POST /before HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\n\r\n"
    variants["after-body"] = ([post, b"abc" + data], [(200, {"PATH_INFO": b"/before"}, None, b"abc")])
    failures = {}
    for name, (pieces, prefix) in variants.items():
        rejects.clear()
        problems = _check_in_process(case, pieces, prefix, rejects)
        if problems:
            failures[name] = problems
    assert not failures, f"{case.name} ({case.rfc}): {failures}"


def test_corpus_size_and_sources():
    names = [c.name for c in CORPUS]
    assert len(names) == len(set(names)), "case names must be unique"
    assert len(CORPUS) >= 150
    for c in CORPUS:
        assert re.match(r"RFC \d{4}", c.rfc), c.name
        assert isinstance(c.raw, bytes) and c.raw, c.name
        if c.status in (0, 200):
            assert not c.log, c.name
        else:
            assert c.log, f"{c.name}: a refusal names its log line"
    valid = [c for c in CORPUS if c.status == 200]
    refused = [c for c in CORPUS if c.status not in (0, 200)]
    assert len(valid) >= 60 and len(refused) >= 60
    smuggling = [c for c in CORPUS if c.name.startswith("smuggle-") or "content-length" in c.name
                 or "transfer-encoding" in c.name or "obs-fold" in c.name or "bare-lf" in c.name
                 or "chunk-size" in c.name or "before-colon" in c.name]
    assert len(smuggling) >= 40


# ---- real servers -------------------------------------------------------------------------

def _parse_echo(body: bytes) -> tuple[dict, bytes]:
    vars_, data = {}, b""
    for line in body.decode().splitlines():
        k, _, v = line.partition("=")
        if k == "body":
            data = bytes.fromhex(v)
        else:
            vars_[k] = bytes.fromhex(v)
    return vars_, data


class Target:
    def __init__(self, name: str, server: Server, port: int, routed: bool):
        self.name = name
        self.server = server
        self.port = port
        self.routed = routed
        self.tag = "[uwsgi-http] " if routed else ""


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """One server per runtime, each with an --http-socket and an --http router."""
    if not UWSGI.exists():
        pytest.skip("./uwsgi is not built (make build)")
    out = {}
    started = []
    try:
        for runtime in ("python", "lua"):
            direct, routed = free_port(), free_port()
            if runtime == "python":
                app = ["--wsgi-file", HERE / "conformance_echo.py"]
            else:
                app = ["--lua", HERE / "conformance_echo.lua", "--http-socket-modifier1", "6",
                       "--http-modifier1", "6"]
            srv = Server(["--master", "-p", "1", "--http-socket", f"127.0.0.1:{direct}",
                          "--http", f"127.0.0.1:{routed}", "--limit-post", LIMIT_POST,
                          "--socket-timeout", "3", *app], direct,
                         log_path=tmp_path_factory.mktemp(runtime) / "log")
            srv.start()
            started.append(srv)
            srv.wait_port(routed)
            srv.wait_log("spawned uWSGI http 1")
            out[f"{runtime}-http-socket"] = Target(f"{runtime}-http-socket", srv, direct, False)
            out[f"{runtime}-router"] = Target(f"{runtime}-router", srv, routed, True)
        yield out
    finally:
        for srv in started:
            srv.stop()


def _exchange(target: Target, data: bytes) -> tuple[bytes, int]:
    s = connect(f"127.0.0.1:{target.port}", timeout=15)
    try:
        port = s.getsockname()[1]
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:    # refused before the end of a big body: the answer is still there
            pass
        return recv_all(s, timeout=15), port
    finally:
        s.close()


def _run_case(target: Target, case: Case) -> tuple[list[str], str | None]:
    """(problems, the log line the server must have written)."""
    answer, port = _exchange(target, case.raw)
    out = []
    interim = answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    if interim:
        answer = answer[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
    if interim != case.interim:
        out.append(f"100 Continue: {interim}")
    f = io.BytesIO(answer)
    got = []
    while True:
        resp = read_response(f)
        if resp is None:
            break
        got.append(resp)
    exp = _expected(case)
    if exp[-1][0] == 0:
        exp = exp[:-1]
    if [g[0] for g in got] != [e[0] for e in exp]:
        return [f"statuses {[g[0] for g in got]} != {[e[0] for e in exp]}: {answer[:300]!r}"], None
    head = case.raw.split(b" ", 1)[0]
    for (status, headers, body), e in zip(got, exp):
        if status == 200 and head != b"HEAD":
            vars_, data = _parse_echo(body)
            out += _problems(e, vars_, data, target.routed, target.port)
            if vars_.get("REMOTE_PORT") != b"%d" % port:
                out.append(f"REMOTE_PORT {vars_.get('REMOTE_PORT')!r} != {port}")
        elif status != 200 and headers.get("connection") != "close":
            out.append(f"an error response without Connection: close: {headers}")
    if case.closes and got and got[0][1].get("connection") != "close":
        out.append(f"no Connection: close in {got[0][1]}")
    line = None
    if case.status not in (0, 200):
        line = f"{target.tag}{case.status} 127.0.0.1:{port} {case.log}"
    return out, line


def _run_target(target: Target, results: dict) -> None:
    failures, lines = {}, []
    for case in CORPUS:
        try:
            problems, line = _run_case(target, case)
        except Exception as e:   # noqa: BLE001 - reported with the case
            problems, line = [f"{type(e).__name__}: {e}"], None
        if problems:
            failures[case.name] = problems
        if line:
            lines.append(line)
        if case.status != 200 or case.more:
            time.sleep(1 / 10)   # stay well under the reject lines' rate limit (20 a second), which
            # "the client closed the connection in the middle of a request" lines share
    results[target.name] = (failures, lines)


@pytest.fixture(scope="module")
def corpus_results(servers):
    # where each server's log stood: the lines to count are those the corpus run adds (an earlier
    # test's connection may have had the same ephemeral port and reason)
    results = {"log_start": {name: len(t.server.log()) for name, t in servers.items()}}
    threads = [threading.Thread(target=_run_target, args=(t, results)) for t in servers.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    return results


@pytest.mark.parametrize("target", ["python-http-socket", "python-router", "lua-http-socket", "lua-router"])
def test_corpus_against_servers(servers, corpus_results, target):
    failures, _ = corpus_results[target]
    assert not failures, "\n".join(f"{name}: {p}" for name, p in failures.items())


@pytest.mark.parametrize("target", ["python-http-socket", "python-router", "lua-http-socket", "lua-router"])
def test_every_refusal_logs_one_line(servers, corpus_results, target):
    _, lines = corpus_results[target]
    srv = servers[target].server
    # the --http-socket and router targets of a runtime share one server and its log, and ran at
    # once: a line may be expected twice when two cases (of either target) with the same reason
    # got the same ephemeral port, so both targets' lines are counted together
    expected = collections.Counter()
    for name, t in servers.items():
        if t.server is srv:
            expected.update(corpus_results[name][1])
    # Every expected line must be there as often as expected, counted as whole lines: the two
    # targets walk the corpus at once from the same client address, and the kernel may give their
    # connections (to two ports) the same ephemeral port, so "[uwsgi-http] 400 PEER reason" of the
    # router ends with the worker's "400 PEER reason" (CI saw up to four such pairs in one run).
    # One more of a line is still tolerated for at most two lines: the router's own connections to
    # the worker draw ports from the same pool; a refusal logged twice by the server would repeat
    # for every case of its kind.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        log = srv.log()[corpus_results["log_start"][target]:]
        logged = collections.Counter(log.splitlines())
        counts = {line: logged[line] for line in expected}
        missing = [f"{line} (x{counts[line]}, expected x{n})" for line, n in expected.items() if counts[line] < n]
        repeated = [f"{line} (x{counts[line]}, expected x{n})" for line, n in expected.items() if counts[line] > n]
        if not missing and len(repeated) <= 2 and all(counts[line] <= n + 1 for line, n in expected.items()):
            break
        time.sleep(0.2)
    assert lines and not missing, f"{len(missing)} of {sum(expected.values())} lines missing, e.g. {missing[:5]}"
    assert len(repeated) <= 2 and all(counts[line] <= n + 1 for line, n in expected.items()), repeated
    assert "User callback error" not in log and "not logged in the last" not in log
    assert srv.proc.poll() is None


# ---- docs/ERRORS.md -------------------------------------------------------------------------

def _error_rows() -> list[tuple[str, str, str]]:
    """(where, status, log text) of each table row of docs/ERRORS.md."""
    rows = []
    for line in (ROOT / "docs" / "ERRORS.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[2].startswith("`") and cells[0] not in ("where", "---"):
            rows.append((cells[0], cells[1], cells[2].strip("`")))
    return rows


def _row_pattern(text: str) -> re.Pattern:
    """A row's log line as a pattern: <peer>, <n>, <text> stand for any value."""
    parts = re.split(r"(<[a-z]+>)", text)
    return re.compile("".join(".+?" if i % 2 else re.escape(p) for i, p in enumerate(parts)))


def test_errors_md_lists_every_corpus_refusal():
    rows = _error_rows()
    assert len(rows) >= 50
    patterns = [_row_pattern(r[2]) for r in rows]
    for case in CORPUS:
        if case.log:
            line = f"{case.status} 127.0.0.1:1 {case.log}"
            assert any(p.fullmatch(line) for p in patterns), f"{case.name}: no docs/ERRORS.md row for {line!r}"


def test_errors_md_rows_occur(servers, corpus_results, tmp_path):
    """Every row's log text occurs in a real server's log: the corpus drives the HTTP rows; the
    uwsgi-protocol, router and connection rows are driven here."""
    logs = [t.server.log() for t in servers.values()]
    logs.append(_drive_uwsgi_errors(tmp_path))
    logs.append(_drive_router_errors(tmp_path))
    logs.append(_drive_connection_errors(tmp_path))
    text = "\n".join(logs)
    missing = [(where, status, t) for where, status, t in _error_rows() if not _row_pattern(t).search(text)]
    assert not missing, f"docs/ERRORS.md rows whose log text never occurred: {missing}"


def _wait(srv: Server, pattern: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not re.search(pattern, srv.log()) and time.monotonic() < deadline:
        time.sleep(0.05)


def _drive_uwsgi_errors(tmp_path) -> str:
    port = free_port()
    with Server(["--socket", f"127.0.0.1:{port}", "--wsgi-file", HERE / "conformance_echo.py",
                 "--limit-post", "1000", "--max-vars", "20", "--http-header-timeout", "1"], port,
                log_path=tmp_path / "uwsgi.log") as srv:
        addr = f"127.0.0.1:{port}"
        slow = connect(addr)
        slow.sendall(bytes([0, 100, 0, 0]) + b"\x01")       # a packet that stops arriving
        assert raw(addr, bytes([0]) + struct.pack("<H", 5000) + bytes([0]) + b"x" * 5000) == b""
        bad = b"\x05\x00KEY"
        assert raw(addr, bytes([0]) + struct.pack("<H", len(bad)) + bytes([0]) + bad) == b""
        assert raw(addr, uwsgi_packet({"REQUEST_METHOD": "GET", "CONTENT_LENGTH": "abc"})) == b""
        assert raw(addr, uwsgi_packet({"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "5000"})).startswith(b"HTTP/1.1 413")
        assert raw(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 400")
        for text in ("invalid request block size", "invalid uwsgi packet", "invalid CONTENT_LENGTH",
                     "over --limit-post", "HTTP request on a uwsgi socket", "uwsgi packet not complete"):
            _wait(srv, re.escape(text))
        slow.close()
        return srv.log()


def _drive_router_errors(tmp_path) -> str:
    """The router's own refusals, in-process (a ClientConnection on a socketpair, a fake worker):
    vars too big for the workers, vars the uwsgi packet cannot carry, a client too slow, workers
    that answer nothing, half a head, garbage or a head too big, workers that cannot be reached."""
    from uwsgid.net import protocols
    from uwsgid.net.protocols import Limits
    from uwsgid.server import router as router_mod
    lines = []
    saved = protocols._rejects.write, protocols._tag
    protocols._rejects.write = lines.append
    protocols._tag = "[uwsgi-http] "
    backend = socket.socket()
    backend.bind(("127.0.0.1", 0))
    backend.listen(8)

    class R:
        limits = Limits(buffer_size=300)
        stopping = False
        backend_family = socket.AF_INET
        backend_addr = backend.getsockname()
        backend_name = "127.0.0.1:test"
        http_timeout = headers_timeout = connect_timeout = idle_timeout = 60.0

        class opts:
            socket_timeout = 1

    def client(request: bytes, answer: bytes | None = None, half_close=True) -> bytes:
        """answer None: the request never reaches a worker."""
        a, b = socket.socketpair()
        conn = router_mod.ClientConnection(R, a, ("127.0.0.1", 4242), router_mod._Side(0, 0, ("127.0.0.1", 80)))

        def worker():
            s, _ = backend.accept()
            s.recv(65536)
            s.sendall(answer)
            s.close()
        t = threading.Thread(target=worker) if answer is not None else None
        if t:
            t.start()
        b.sendall(request)
        if half_close:
            b.shutdown(socket.SHUT_WR)
        conn.serve()
        if t:
            t.join(5)
        out = recv_all(b, 5)
        b.close()
        return out

    try:
        assert client(get(b"/x"), b"").startswith(b"HTTP/1.1 502")
        assert client(get(b"/x"), b"HTTP/1.1 200 OK\r\n").startswith(b"HTTP/1.1 502")
        assert client(get(b"/x"), b"garbage\r\n\r\n").startswith(b"HTTP/1.1 502")
        assert client(get(b"/x"), b"x" * 70000).startswith(b"HTTP/1.1 502")
        assert client(get(b"/" + b"a" * 200, b"X-Pad: " + b"p" * 60)).startswith(b"HTTP/1.1 431")
        assert client(b"GET / HTTP/1.1\r\nHost: x\r\n", half_close=False).startswith(b"HTTP/1.1 408")
        R.limits = Limits(buffer_size=200000)
        assert client(get(b"/", b"X-Big: " + b"b" * 70000)).startswith(b"HTTP/1.1 431")
        backend.close()
        assert client(get(b"/x")).startswith(b"HTTP/1.1 502")
    finally:
        protocols._rejects.write, protocols._tag = saved
        backend.close()
    return "\n".join(lines)


def _drive_connection_errors(tmp_path) -> str:
    """The lines net/connection.py writes (timeouts, a client gone mid-request)."""
    port = free_port()
    with Server(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", HERE / "conformance_echo.py",
                 "--socket-timeout", "1", "--http-header-timeout", "1", "--post-buffering", "100000000"], port,
                log_path=tmp_path / "conn.log") as srv:
        addr = f"127.0.0.1:{port}"
        silent = connect(addr)
        head = connect(addr)
        head.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        partial = connect(addr)
        partial.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
        gone = connect(addr)
        gone.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        gone.close()
        # a client that stops reading a big response
        big = b"x" * 4_000_000
        reader = connect(addr)
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(big) + big)
        for text in ("sent nothing in", "sent an incomplete request", "closed the connection in the middle",
                     "stopped reading the response", "request head not complete"):
            _wait(srv, re.escape(text), timeout=20)
        for s in (silent, head, partial, reader):
            s.close()
        return srv.log()


# ---- the rate limit ------------------------------------------------------------------------

def test_reject_lines_are_rate_limited():
    from uwsgid.util.ratelimit import RateLimitedLog
    now = [100.0]
    out = []
    lim = RateLimitedLog(3, "rejected requests", clock=lambda: now[0], write=out.append)
    for i in range(10):
        lim.log(f"line {i}")
    assert out == ["line 0", "line 1", "line 2"]
    now[0] = 102.5
    lim.log("later")
    assert out[3].startswith("rejected requests: 7 more lines not logged in the last 2s") and out[4] == "later"
    now[0] = 103.1
    assert lim.log("next second") and out[-1] == "next second"
    assert len(out) == 6


def test_a_flood_of_bad_requests_is_logged_under_the_limit(tmp_path):
    port = free_port()
    with Server(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", HERE / "conformance_echo.py"], port,
                log_path=tmp_path / "log") as srv:
        t0 = time.monotonic()
        for _ in range(200):
            assert raw(f"127.0.0.1:{port}", b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400")
        seconds = time.monotonic() - t0
        time.sleep(1.1)
        raw(f"127.0.0.1:{port}", b"GET / HTTP/1.1\r\n\r\n")    # no Host: one more line, after the count
        _wait(srv, "HTTP/1.1 request without a Host header")
        log = srv.log()
        refusals = len(re.findall(r"^400 127\.0\.0\.1:\d+ ", log, re.MULTILINE))
        suppressed = sum(int(n) for n in re.findall(r"^rejected requests: (\d+) more lines? not logged", log, re.MULTILINE))
        assert refusals + suppressed == 201, log[-2000:]
        assert suppressed > 0 and refusals <= 20 * (int(seconds) + 3)
