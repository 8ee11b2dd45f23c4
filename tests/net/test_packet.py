"""The uwsgi packet codec: C (_uwsgi, from uwsgi.h + core/packet.c) vs the pure-Python
fallback vs an independent oracle, on hand-built, truncated and hostile packets."""

import os
import struct

import pytest
from build_helpers import built
from hypothesis import given, settings
from hypothesis import strategies as st
from native_support import oracle  # an independent, naive reading of the format

from uwsgid.net import packet as P


def _load_uwsgi():
    try:
        import _uwsgi
        return _uwsgi
    except ImportError:
        # not built yet (plain pytest before make build): build the core profile for the tests
        import importlib.util
        import sys
        out = built("core")
        sys.path.append(str(out / "build" / "lib"))
        spec = importlib.util.find_spec("_uwsgi")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod


_uwsgi = _load_uwsgi()
ffi, lib = _uwsgi.ffi, _uwsgi.lib


if P._c is None:        # packet.py was imported before _uwsgi was importable: wire the C codec in
    P._c = _uwsgi
    P._ERRORS.update({lib.UWSGI_ERR_EMPTY_KEY: "empty key", lib.UWSGI_ERR_TRUNCATED: "truncated",
                      lib.UWSGI_ERR_TOO_MANY: "too many", lib.UWSGI_ERR_ARGS: "invalid"})


def parse_c(data, max_vars=64):
    return P.parse_vars_c(data, max_vars)


def kind_of(exc: Exception) -> str:
    msg = str(exc)
    for word, kind in (("empty", "empty"), ("truncated", "truncated"), ("too many", "too many")):
        if word in msg:
            return kind
    return msg


def run(fn, data, max_vars=64):
    try:
        return fn(data, max_vars)
    except P.PacketError as e:
        return kind_of(e)


def enc(k: bytes, v: bytes) -> bytes:
    return struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v


# --- hand-built packets --------------------------------------------------------------------

GOOD = enc(b"REQUEST_METHOD", b"GET") + enc(b"PATH_INFO", b"/") + enc(b"SCRIPT_NAME", b"")


@pytest.mark.parametrize("parse", [P.parse_vars_py, parse_c], ids=["py", "c"])
def test_hand_built(parse):
    assert parse(GOOD) == {b"REQUEST_METHOD": b"GET", b"PATH_INFO": b"/", b"SCRIPT_NAME": b""}
    assert parse(b"") == {}
    assert parse(memoryview(b"xx" + GOOD)[2:]) == parse(GOOD)
    assert parse(bytearray(GOOD)) == parse(GOOD)
    # binary-safe keys/values, max sizes
    big = enc(b"K" * 65535, b"\x00\xff" * 10)
    assert parse(big) == {b"K" * 65535: b"\x00\xff" * 10}


@pytest.mark.parametrize("parse", [P.parse_vars_py, parse_c], ids=["py", "c"])
@pytest.mark.parametrize("data,kind", [
    (b"\x00", "truncated"),                                  # half a key length
    (b"\x00\x00", "empty"),                                  # zero-length key
    (b"\x00\x00\x00\x00", "empty"),
    (b"\x05\x00abc", "truncated"),                           # key past the end
    (b"\x03\x00abc", "truncated"),                           # no value length
    (b"\x03\x00abc\x01", "truncated"),                       # half a value length
    (b"\x03\x00abc\x05\x00xy", "truncated"),                 # value past the end
    (b"\xff\xff", "truncated"),                              # huge key length
    (GOOD + b"\x01", "truncated"),                           # trailing garbage byte
    (GOOD + b"\x00\x00", "empty"),
])
def test_malformed(parse, data, kind):
    with pytest.raises(P.PacketError) as e:
        parse(data)
    assert kind_of(e.value) == kind
    assert oracle(data) == kind


@pytest.mark.parametrize("parse", [P.parse_vars_py, parse_c], ids=["py", "c"])
def test_max_vars(parse):
    data = b"".join(enc(b"k%d" % i, b"v") for i in range(10))
    assert len(parse(data, 10)) == 10
    with pytest.raises(P.PacketError, match="too many"):
        parse(data, 9)
    with pytest.raises(P.PacketError, match="too many"):
        parse(enc(b"a", b"b"), 0)
    assert parse(b"", 0) == {}
    with pytest.raises(P.PacketError):
        parse(b"", -1)
    # duplicates count as vars; the last value wins
    assert parse(enc(b"a", b"1") + enc(b"a", b"2"), 2) == {b"a": b"2"}


def test_c_error_codes_are_distinct():
    codes = {lib.UWSGI_ERR_INCOMPLETE, lib.UWSGI_ERR_EMPTY_KEY, lib.UWSGI_ERR_TRUNCATED,
             lib.UWSGI_ERR_TOO_MANY, lib.UWSGI_ERR_NOSPACE, lib.UWSGI_ERR_ARGS}
    assert len(codes) == 6 and all(c < 0 for c in codes)
    offs = ffi.new("uint32_t[]", 8)
    assert lib.uwsgi_parse_vars(b"\x00\x00", 2, 2, offs) == lib.UWSGI_ERR_EMPTY_KEY
    assert lib.uwsgi_parse_vars(b"\x05\x00ab", 4, 2, offs) == lib.UWSGI_ERR_TRUNCATED
    assert lib.uwsgi_parse_vars(GOOD, len(GOOD), 2, offs) == lib.UWSGI_ERR_TOO_MANY
    assert lib.uwsgi_parse_vars(ffi.NULL, 5, 2, offs) == lib.UWSGI_ERR_ARGS
    assert lib.uwsgi_parse_vars(GOOD, len(GOOD), -1, offs) == lib.UWSGI_ERR_ARGS
    assert lib.uwsgi_parse_vars(ffi.NULL, 0, 0, ffi.NULL) == 0


def test_c_never_reads_past_len():
    # the buffer continues with a valid-looking var, but len stops the parser before it
    data = enc(b"a", b"b") + enc(b"c", b"d")
    offs = ffi.new("uint32_t[]", 8)
    assert lib.uwsgi_parse_vars(data, 6, 4, offs) == 1
    for cut in range(1, 6):
        assert lib.uwsgi_parse_vars(data, cut, 4, offs) < 0
    # guarded memory: the packet ends exactly at the end of an allocation
    tail = ffi.new("char[]", 3)
    ffi.memmove(tail, b"\x09\x00a", 3)
    assert lib.uwsgi_parse_vars(tail, 3, 4, offs) == lib.UWSGI_ERR_TRUNCATED


def test_c_offsets_point_into_buffer():
    offs = ffi.new("uint32_t[]", 12)
    n = lib.uwsgi_parse_vars(GOOD, len(GOOD), 3, offs)
    assert n == 3
    o = list(offs)
    assert GOOD[o[0]:o[0] + o[1]] == b"REQUEST_METHOD" and GOOD[o[2]:o[2] + o[3]] == b"GET"
    assert o[11] == 0


def test_header():
    assert P.HEADER_SIZE == 4
    assert P.parse_header(b"\x06\x34\x12\x01rest") == (6, 0x1234, 1)
    with pytest.raises(P.PacketError, match="truncated uwsgi header"):
        P.parse_header(b"\x06\x00")
    m1, size, m2 = ffi.new("uint8_t *"), ffi.new("uint16_t *"), ffi.new("uint8_t *")
    assert lib.uwsgi_parse_header(b"\x06\x34\x12\x01", 4, m1, size, m2) == 4
    assert (m1[0], size[0], m2[0]) == (6, 0x1234, 1)
    assert lib.uwsgi_parse_header(b"\x06\x34\x12", 3, m1, size, m2) == lib.UWSGI_ERR_INCOMPLETE


def test_encode_and_build():
    vars = {b"REQUEST_METHOD": b"GET", b"PATH_INFO": b"/", b"SCRIPT_NAME": b""}
    assert P.encode_vars(vars) == GOOD
    pkt = P.build_packet(6, vars, 1)
    assert pkt[:4] == bytes([6, len(GOOD) & 0xFF, len(GOOD) >> 8, 1]) and pkt[4:] == GOOD
    assert P.build_packet(0, {}) == b"\x00\x00\x00\x00"
    with pytest.raises(P.PacketError, match="empty key"):
        P.encode_vars({b"": b"x"})
    with pytest.raises(P.PacketError, match="too long"):
        P.encode_vars({b"k": b"x" * 65536})
    with pytest.raises(P.PacketError, match="exceeds 65535"):
        P.build_packet(0, {b"a": b"x" * 40000, b"b": b"y" * 40000})
    with pytest.raises(P.PacketError, match="0-255"):
        P.build_packet(256, {})
    # C encoder agrees
    buf = ffi.new("char[]", 64)
    n = lib.uwsgi_encode_var(buf, 64, b"PATH_INFO", 9, b"/", 1)
    assert ffi.buffer(buf, n)[:] == enc(b"PATH_INFO", b"/")
    assert lib.uwsgi_encode_var(buf, 5, b"PATH_INFO", 9, b"/", 1) == lib.UWSGI_ERR_NOSPACE
    assert lib.uwsgi_encode_var(buf, 64, b"", 0, b"/", 1) == lib.UWSGI_ERR_ARGS
    assert lib.uwsgi_build_header(buf, 64, 6, 300, 2) == 4
    assert ffi.buffer(buf, 4)[:] == struct.pack("<BHB", 6, 300, 2)
    assert lib.uwsgi_build_header(buf, 64, 6, 70000, 2) == lib.UWSGI_ERR_ARGS


def test_string_helpers():
    assert lib.uwsgi_endswith(b"foobar", b"bar") == 1
    assert lib.uwsgi_endswith(b"foobar", b"foo") == 0
    assert lib.uwsgi_endswith(b"ar", b"bar") == 0
    assert lib.uwsgi_endswith(b"foobar", b"") == 1
    assert lib.uwsgi_startswith(b"foobar", b"foo") == 1
    assert lib.uwsgi_startswith(b"foobar", b"bar") == 0
    assert lib.uwsgi_contains(b"foobar", b"oba") == 1
    assert lib.uwsgi_contains(b"foobar", b"xyz") == 0
    assert lib.uwsgi_endswith(ffi.NULL, b"x") == 0
    assert lib.uwsgi_startswith_n(b"foobar", 3, b"foob", 4) == 0
    assert lib.uwsgi_endswith_n(b"foobar", 6, b"bar", 3) == 1
    assert lib.uwsgi_strncaseeq(b"Content-Length", 14, b"content-length", 14) == 1
    assert lib.uwsgi_strncaseeq(b"Content-Length", 14, b"content-lengt", 13) == 0


# --- property-based: C vs Python vs oracle -------------------------------------------------

keys = st.binary(min_size=1, max_size=40)
vals = st.binary(max_size=60)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(keys, vals, max_size=20))
def test_roundtrip(d):
    data = P.encode_vars(d)
    assert P.parse_vars_py(data) == d == parse_c(data) == oracle(data)
    m1, size, m2 = P.parse_header(P.build_packet(5, d, 7))
    assert (m1, size, m2) == (5, len(data), 7)


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=12))
def test_random_bytes_agree(data, max_vars):
    expected = oracle(data, max_vars)
    assert run(P.parse_vars_py, data, max_vars) == expected
    assert run(parse_c, data, max_vars) == expected


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(keys, vals, min_size=1, max_size=8), st.data())
def test_truncated_and_mutated(d, data):
    packet = P.encode_vars(d)
    cut = data.draw(st.integers(min_value=0, max_value=len(packet)))
    truncated = packet[:cut]
    assert run(P.parse_vars_py, truncated) == oracle(truncated) == run(parse_c, truncated)
    pos = data.draw(st.integers(min_value=0, max_value=len(packet) - 1))
    mutated = packet[:pos] + bytes([data.draw(st.integers(0, 255))]) + packet[pos + 1:]
    assert run(P.parse_vars_py, mutated) == oracle(mutated) == run(parse_c, mutated)


def test_default_is_c_when_built():
    import subprocess
    import sys
    code = ("import sys; sys.path.insert(0, %r); from uwsgid.net import packet; "
            "print(packet.parse_vars is packet.parse_vars_c)" % os.path.dirname(_uwsgi.__file__))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "True", out.stderr
    env = dict(os.environ, UWSGI_PACKET_PURE="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "False", out.stderr


# --- the split form (uwsgi_parse_vars_split) and accept4 -----------------------------------

def split_c(data: bytes, max_vars: int = 64):
    cap = max(len(data), 1)
    keys, vals, lens = ffi.new("char[]", cap), ffi.new("char[]", cap), ffi.new("uint32_t[2]")
    n = lib.uwsgi_parse_vars_split(data, len(data), max_vars, keys, vals, cap, lens)
    if n < 0:
        return n
    return n, ffi.buffer(keys, lens[0])[:], ffi.buffer(vals, lens[1])[:]


def test_split_form():
    assert split_c(GOOD) == (3, b"REQUEST_METHOD\0PATH_INFO\0SCRIPT_NAME", b"GET\0/\0")
    assert split_c(b"") == (0, b"", b"")
    assert split_c(GOOD, 2) == lib.UWSGI_ERR_TOO_MANY
    assert split_c(GOOD + b"\x01") == lib.UWSGI_ERR_TRUNCATED
    assert split_c(b"\x00\x00") == lib.UWSGI_ERR_EMPTY_KEY
    out = ffi.new("char[]", 8)
    lens = ffi.new("uint32_t[2]")
    assert lib.uwsgi_parse_vars_split(GOOD, len(GOOD), 64, out, out, 8, lens) == lib.UWSGI_ERR_NOSPACE
    # empty values still get their separators
    d = enc(b"k", b"") * 3
    assert split_c(d) == (3, b"k\0k\0k", b"\0\0")


def test_nul_bytes_in_names_and_values_fall_back():
    # a NUL inside a name or value: the split form is ambiguous, the parser uses the offsets
    a = enc(b"a\0b", b"1")                       # one var named "a\0b"
    b = enc(b"a", b"1") + enc(b"b", b"2")        # two vars whose names join to "a\0b" too
    for data in (b, a, b, a):                    # either may be the one cached first
        assert parse_c(data) == oracle(data)
    v = enc(b"k", b"x\0y") + enc(b"j", b"")
    assert parse_c(v) == {b"k": b"x\0y", b"j": b""}


def test_accept4_nonblocking_cloexec():
    import errno
    import fcntl
    import socket
    with socket.socket() as ls:
        ls.bind(("127.0.0.1", 0))
        ls.listen(4)
        ls.setblocking(False)
        addr = ffi.new("char[]", 128)
        alen = ffi.new("unsigned int *")
        assert lib.uwsgi_accept(ls.fileno(), addr, 128, alen) == -errno.EAGAIN
        with socket.create_connection(ls.getsockname()) as c:
            fd = lib.uwsgi_accept(ls.fileno(), addr, 128, alen)
            assert fd >= 0
            try:
                assert os.get_blocking(fd) is False
                assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
                raw = ffi.buffer(addr, alen[0])[:]
                from uwsgid.net.connection import remote_address
                host, port = c.getsockname()
                assert remote_address(raw, fd) == (host.encode(), b"%d" % port)
                assert remote_address(None, fd) == (host.encode(), b"%d" % port)
            finally:
                os.close(fd)
        with socket.create_connection(ls.getsockname()):
            fd = lib.uwsgi_accept(ls.fileno(), ffi.NULL, 0, ffi.NULL)   # no address wanted
            assert fd >= 0
            os.close(fd)
    assert lib.uwsgi_accept(-1, ffi.NULL, 0, ffi.NULL) == -errno.EBADF


def _segments_out(s) -> int:
    # struct tcp_info's tcpi_segs_out (Linux >= 4.2): segments this socket has sent
    import socket
    return struct.unpack_from("I", s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 232), 136)[0]


@pytest.mark.parametrize("last", [True, False])
def test_send_last_leaves_with_the_fin(last):
    # uwsgi_send_last's bytes wait for the end of the stream and go in the FIN's segment; a plain
    # send goes at once, and the FIN after it in a second segment
    import socket
    with socket.socket() as ls:
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        with socket.create_connection(ls.getsockname()) as c:
            s, _ = ls.accept()
            with s:
                data = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
                before = _segments_out(s)
                n = lib.uwsgi_send_last(s.fileno(), data, len(data)) if last else s.send(data)
                assert n == len(data)
                s.shutdown(socket.SHUT_WR)
                assert _segments_out(s) - before == (1 if last else 2)
                c.settimeout(5)
                got = b""
                while chunk := c.recv(4096):
                    got += chunk
                assert got == data


def test_send_last_errors_as_negative_errno():
    import errno
    assert lib.uwsgi_send_last(-1, b"x", 1) == -errno.EBADF
