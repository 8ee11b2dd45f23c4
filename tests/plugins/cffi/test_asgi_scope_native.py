"""_uwsgi_native.asgi_scope (core/cpython/asgi_scope.c), the ASGI scope the native lane's ASGI
requests get (cffi_plugin/asgi_lane.py): equal to the Python builder's (asgi_http.scope_from_vars)
for every block it takes, None for the shapes it leaves to Python, and never a crash on random,
truncated or mutated blocks."""

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "net"))
from native_support import NGINX_VARS, enc, load_native, random_block  # noqa: E402

from cffi_plugin.asgi_http import ASGI, scope_from_vars  # noqa: E402
from uwsgid.net.packet import parse_vars  # noqa: E402

N = load_native()
# what the lane's HTTP reader encodes (lane_env_http.c http_block: the Python HttpParser's vars)
LANE_HTTP = [
    (b"SERVER_PROTOCOL", b"HTTP/1.1"), (b"REQUEST_METHOD", b"GET"), (b"REQUEST_URI", b"/a%20b?x=1&y=%2F"),
    (b"QUERY_STRING", b"x=1&y=%2F"), (b"PATH_INFO", b"/a b"), (b"SCRIPT_NAME", b""), (b"SERVER_NAME", b"vm"),
    (b"SERVER_PORT", b"8000"), (b"REMOTE_ADDR", b"127.0.0.1"), (b"REMOTE_PORT", b"41234"),
    (b"HTTP_HOST", b"127.0.0.1:8000"), (b"HTTP_X_CUSTOM_THING", b"Yes"), (b"HTTP_ACCEPT", b"*/*"),
]


def block(pairs) -> bytes:
    return b"".join(enc(k, v) for k, v in pairs)


def python_scope(data: bytes, state: dict) -> dict:
    v = parse_vars(data, 1024)
    return scope_from_vars(v, v.get(b"REQUEST_METHOD", b"GET"),
                           v.get(b"SCRIPT_NAME", b"").decode("latin-1").rstrip("/"),
                           v.get(b"PATH_INFO", b"").decode("latin-1"), state)


@pytest.mark.parametrize("pairs", [
    LANE_HTTP,
    NGINX_VARS,
    LANE_HTTP[:2],                                                      # almost nothing
    [*LANE_HTTP, (b"SCRIPT_NAME", b"/app//"), (b"CONTENT_TYPE", b"text/x"), (b"CONTENT_LENGTH", b"0")],
    [(k, b"HTTP/1.0") if k == b"SERVER_PROTOCOL" else (k, v) for k, v in LANE_HTTP],
    [(k, b"PATCH") if k == b"REQUEST_METHOD" else (k, v) for k, v in LANE_HTTP],
    [(k, b"HEAD") if k == b"REQUEST_METHOD" else (k, v) for k, v in LANE_HTTP],
    [kv for kv in LANE_HTTP if kv[0] not in (b"REMOTE_ADDR", b"SERVER_NAME", b"SERVER_PORT")],
    [kv for kv in LANE_HTTP if kv[0] != b"REMOTE_PORT"],
], ids=["lane-http", "nginx", "minimal", "script-name", "http10", "patch", "head", "no-addresses", "no-port"])
def test_same_scope_as_the_python_builder(pairs):
    data = block(pairs)
    state = {"db": object()}
    got = N.asgi_scope(data, state, ASGI)
    assert got == python_scope(data, state)
    assert got["state"] is not state and got["state"]["db"] is state["db"]     # a copy, per request
    assert got["asgi"] is ASGI


def test_header_names_cached_by_position_but_never_wrong():
    a = N.asgi_scope(block(LANE_HTTP), {}, ASGI)["headers"]
    other = [(b"HTTP_X_OTHER" if k == b"HTTP_X_CUSTOM_THING" else k, v) for k, v in LANE_HTTP]
    b = N.asgi_scope(block(other), {}, ASGI)["headers"]
    assert (b"x-custom-thing", b"Yes") in a and (b"x-other", b"Yes") in b and (b"x-custom-thing", b"Yes") not in b


@pytest.mark.parametrize("extra", [
    [(b"CONTENT_LENGTH", b"5")], [(b"HTTP_UPGRADE", b"websocket")], [(b"HTTP_TRANSFER_ENCODING", b"chunked")],
    [(b"HTTPS", b"on")], [(b"UWSGI_SCHEME", b"https")], [(b"PATH_INFO", "/é".encode())],
    [(b"SERVER_PROTOCOL", b"HTTP/2.0")], [(b"SERVER_PORT", b"80a")], [(b"REMOTE_PORT", b"-1")],
])
def test_shapes_left_to_python(extra):
    assert N.asgi_scope(block([*LANE_HTTP, *extra]), {}, ASGI) is None


def test_bad_arguments_raise_type_error():
    with pytest.raises(TypeError):
        N.asgi_scope("not bytes", {}, ASGI)
    with pytest.raises(TypeError):
        N.asgi_scope(b"", None, ASGI)


def test_random_blocks_never_crash_and_agree():
    rng = random.Random(19)
    for _ in range(3000):
        data = random_block(rng)
        got = N.asgi_scope(data, {}, ASGI)
        if got is not None:
            assert got == python_scope(data, {})
