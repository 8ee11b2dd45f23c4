"""_uwsgi_native.parse_vars and .environ (core/cpython/native.c): against an oracle, the
pure-Python codec and the Python environ, on good, hostile, truncated and random input."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from native_support import KINDS, NGINX_VARS, enc, fuzz, load_native, native_kind, oracle

from uwsgid.net import packet as P

N = load_native()
BLOCK = b"".join(enc(k, v) for k, v in NGINX_VARS)


def test_nginx_block():
    assert N.parse_vars(BLOCK, 64) == dict(NGINX_VARS)
    assert list(N.parse_vars(BLOCK, 64)) == [k for k, _ in NGINX_VARS]   # the packet's order


def test_keys_reused_across_packets_but_never_wrong():
    a = N.parse_vars(BLOCK, 64)
    b = N.parse_vars(BLOCK, 64)
    assert all(x is y for x, y in zip(a, b))          # the cached key objects
    other = b"".join(enc(k.lower(), v) for k, v in NGINX_VARS)
    c = N.parse_vars(other, 64)
    assert list(c) == [k.lower() for k, _ in NGINX_VARS]
    assert N.parse_vars(BLOCK, 64) == dict(NGINX_VARS)


@pytest.mark.parametrize("data, kind", [
    (b"\x00", "truncated"),                        # half a key length
    (b"\x00\x00\x00\x00", "empty"),                # zero-length key
    (b"\x05\x00abc", "truncated"),                 # key runs past the end
    (b"\x01\x00a", "truncated"),                   # no value length
    (b"\x01\x00a\x05\x00xy", "truncated"),         # value runs past the end
    (b"\x01\x00a\x00\x00\xff", "truncated"),       # a trailing byte
    (b"\xff\xff" + b"k" * 10, "truncated"),        # a length far past the packet
])
def test_bad_sizes(data, kind):
    assert oracle(data) == kind
    assert KINDS[N.parse_vars(data, 64)] == kind
    with pytest.raises(P.PacketError):
        P.parse_vars(data, 64)


def test_max_vars():
    block = b"".join(enc(b"K%d" % i, b"v") for i in range(10))
    assert len(N.parse_vars(block, 10)) == 10
    assert KINDS[N.parse_vars(block, 9)] == "too many"
    assert KINDS[N.parse_vars(block, 0)] == "too many"
    assert N.parse_vars(b"", 0) == {}
    big = b"".join(enc(b"K%d" % i, b"") for i in range(500))    # past the stack offsets
    assert len(N.parse_vars(big, 500)) == 500
    assert KINDS[N.parse_vars(big, 499)] == "too many"


def test_bad_arguments():
    with pytest.raises(TypeError):
        N.parse_vars("text", 64)
    with pytest.raises(TypeError):
        N.parse_vars(BLOCK)
    with pytest.raises(ValueError):
        N.parse_vars(BLOCK, -1)


def test_non_latin1_and_nul_bytes_kept():
    block = enc(b"HTTP_X\xe9", b"caf\xc3\xa9\x00\xff") + enc(b"A\x00B", b"")
    assert N.parse_vars(block, 64) == {b"HTTP_X\xe9": b"caf\xc3\xa9\x00\xff", b"A\x00B": b""}


def test_duplicate_keys_last_wins_like_python():
    block = enc(b"A", b"1") + enc(b"B", b"2") + enc(b"A", b"3")
    assert N.parse_vars(block, 64) == P.parse_vars_py(block, 64) == {b"A": b"3", b"B": b"2"}


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.binary(min_size=1, max_size=30), st.binary(max_size=60), max_size=40))
def test_roundtrip(d):
    block = P.encode_vars(d)
    assert N.parse_vars(block, 64) == d == P.parse_vars_py(block, 64)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 70))
def test_random_bytes_agree_with_the_oracle(data, max_vars):
    assert native_kind(N, data, max_vars) == oracle(data, max_vars)


def test_fuzz_bounded():
    assert fuzz(N, 2.0, seed=16) > 1000


# ---- environ ---------------------------------------------------------------------------------

BASE = {"wsgi.version": (1, 0), "wsgi.url_scheme": "http", "SCRIPT_NAME": "", "PATH_INFO": "",
        "QUERY_STRING": "", "SERVER_NAME": "localhost", "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.0", "REQUEST_METHOD": "GET", "wsgi.input": object()}


def python_environ(vars_: dict) -> dict:
    """The Python environ of cffi_plugin.environ, with the C path switched off."""
    from cffi_plugin import environ as E
    saved = E._native_environ
    E._native_environ = None
    try:
        return E.build_environ(_Req(vars_), BASE)
    finally:
        E._native_environ = saved


class _Req:
    core = None
    input_terminated = False

    def __init__(self, vars_):
        self.vars = vars_


def test_environ_matches_python_for_nginx_vars():
    v = dict(NGINX_VARS)
    env = N.environ(v, BASE)
    assert env == python_environ(v)
    assert env["REQUEST_METHOD"] == "GET" and env["wsgi.version"] == (1, 0)
    assert env is not BASE and "HTTP_HOST" not in BASE      # a copy: base untouched


def test_environ_latin1_per_pep3333():
    v = {b"PATH_INFO": b"/caf\xc3\xa9", b"HTTP_X": b"\x80\xff\x00", b"HTTP_\xe9": b"x"}
    env = N.environ(v, BASE)
    assert env["PATH_INFO"] == "/caf\u00c3\u00a9" and env["HTTP_X"] == "\x80\xff\x00"
    assert env["HTTP_\u00e9"] == "x"
    assert all(type(k) is str for k in env)
    assert env == python_environ(v)


def test_environ_drops_and_fixups():
    v = {b"HTTP_CONTENT_TYPE": b"x", b"HTTP_CONTENT_LENGTH": b"1", b"CONTENT_TYPE": b"t",
         b"SCRIPT_NAME": b"/app//"}
    env = N.environ(v, BASE)
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["CONTENT_TYPE"] == "t" and env["SCRIPT_NAME"] == "/app"
    assert N.environ({b"SCRIPT_NAME": b"/"}, BASE)["SCRIPT_NAME"] == ""
    assert env == python_environ(v)


@pytest.mark.parametrize("vars_, scheme", [
    ({}, "http"),
    ({b"HTTPS": b"on"}, "https"), ({b"HTTPS": b"ON"}, "https"), ({b"HTTPS": b"1"}, "https"),
    ({b"HTTPS": b"true"}, "https"), ({b"HTTPS": b"Yes"}, "https"), ({b"HTTPS": b"off"}, "http"),
    ({b"HTTPS": b""}, "http"), ({b"HTTPS": b"o"}, "http"), ({b"HTTPS": b"yess"}, "http"),
    ({b"UWSGI_SCHEME": b"https"}, "https"), ({b"UWSGI_SCHEME": b"ws", b"HTTPS": b"on"}, "ws"),
    ({b"UWSGI_SCHEME": b"", b"HTTPS": b"on"}, "https"),
])
def test_environ_url_scheme(vars_, scheme):
    assert N.environ(vars_, BASE)["wsgi.url_scheme"] == scheme
    assert python_environ(vars_)["wsgi.url_scheme"] == scheme


def test_environ_bad_input():
    with pytest.raises(TypeError):
        N.environ({"str": b"x"}, BASE)
    with pytest.raises(TypeError):
        N.environ({b"K": "str"}, BASE)
    with pytest.raises(TypeError):
        N.environ([], BASE)
    with pytest.raises(TypeError):
        N.environ({}, BASE, 1)


def test_environ_many_names_stay_correct_past_the_cache():
    for i in range(1500):            # over UWSGI_NATIVE_NAMES_MAX: decoded each time
        k = b"HTTP_X_%d" % i
        assert N.environ({k: b"v"}, BASE)["HTTP_X_%d" % i] == "v"


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.binary(min_size=1, max_size=20), st.binary(max_size=40), max_size=20))
def test_environ_random_matches_python(d):
    d.setdefault(b"SCRIPT_NAME", b"")
    assert N.environ(d, BASE) == python_environ(d)


def test_no_reference_leaks():
    """Every function, on its taken and its declined paths, 20,000 times: the traced Python
    memory does not grow (a leaked object per call would add ~1 MB)."""
    import tracemalloc
    bad_block = BLOCK[:-3]
    v = dict(NGINX_VARS)
    v[b"HTTPS"] = b"on"
    v[b"UWSGI_SCHEME"] = b"https"
    keys = {b"Host": b"HTTP_HOST", b"Content-Length": b"CONTENT_LENGTH"}
    heads = [(b"Host", b"h"), (b"Content-Length", b"3")]
    hdrs = [(b"Content-Type", b"text/plain"), (b"Connection", b"close")]

    def once():
        N.parse_vars(BLOCK, 64)
        N.parse_vars(bad_block, 64)
        N.environ(v, BASE)
        N.http_vars({b"SCRIPT_NAME": b""}, b"GET", b"HTTP/1.1", b"/a%20?q", heads, keys)
        N.http_vars({b"SCRIPT_NAME": b""}, b"GET", b"HTTP/1.1", b"/a", [(b"New", b"x")], keys)
        N.response(b"200 OK", hdrs, [b"a", b"b"], 1 | 2 | 4)
        N.response(b"200 OK", hdrs, [b"a", "str"], 1)
        N.response(b"200 OK", tuple(hdrs), b"body", 0)
        try:
            N.environ({b"K": "str"}, BASE)
        except TypeError:
            pass
    for _ in range(2000):
        once()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(20000):
            once()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, grown
