"""The uwsgi protocol on --socket: packets in, raw HTTP responses out; bad packets close with a log line."""

from __future__ import annotations

import json
import os
import random
import socket
import time

import pytest
from helpers import connect, free_port, raw, recv_all, uwsgi_packet
from http_helpers import WorkerProc

from uwsgid.net.packet import PacketError, parse_vars_py


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    path = str(tmp_path_factory.mktemp("uw") / "uwsgi.sock")
    abstract = f"@uwsgid-proto-{os.getpid()}-{port}"
    with WorkerProc({"socket": [f"127.0.0.1:{port}", path, abstract], "http-socket": [f"127.0.0.1:{free_port()}"],
                     "buffer-size": 4096, "max-vars": 30, "limit-post": 50000}) as w:
        yield w


NGINX_VARS = {  # what nginx's stock uwsgi_params sends (no SCRIPT_NAME)
    "QUERY_STRING": "a=1", "REQUEST_METHOD": "GET", "CONTENT_TYPE": "", "CONTENT_LENGTH": "",
    "REQUEST_URI": "/vars?a=1", "PATH_INFO": "/vars", "DOCUMENT_ROOT": "/srv", "SERVER_PROTOCOL": "HTTP/1.1",
    "REQUEST_SCHEME": "http", "REMOTE_ADDR": "10.0.0.1", "REMOTE_PORT": "5555", "SERVER_PORT": "80",
    "SERVER_NAME": "example", "HTTP_HOST": "example",
}


def split_response(data: bytes):
    head, body = data.split(b"\r\n\r\n", 1)
    return head, body


def test_nginx_params_without_script_name(server):
    data = raw(server.address(0), uwsgi_packet(NGINX_VARS))
    head, body = split_response(data)
    assert head.startswith(b"HTTP/1.1 200 OK")
    v = json.loads(body)
    assert v["SCRIPT_NAME"] == ""
    assert v["REMOTE_ADDR"] == "10.0.0.1"   # as sent by the front end
    assert v["PATH_INFO"] == "/vars"
    assert b"Content-Length: %d" % len(body) in head


@pytest.mark.parametrize("index", [1, 2], ids=["unix", "abstract"])
def test_unix_sockets(server, index):
    data = raw(server.address(index), uwsgi_packet(dict(NGINX_VARS, PATH_INFO="/", REQUEST_URI="/")))
    assert data.endswith(b"Hello World")


def test_body(server):
    body = os.urandom(20000)
    v = dict(NGINX_VARS, PATH_INFO="/echo", REQUEST_METHOD="POST", CONTENT_LENGTH=str(len(body)))
    data = raw(server.address(0), uwsgi_packet(v, body=body))
    assert split_response(data)[1] == body


def test_body_in_fragments(server):
    body = b"q" * 5000
    v = dict(NGINX_VARS, PATH_INFO="/echo", REQUEST_METHOD="POST", CONTENT_LENGTH=str(len(body)))
    pkt = uwsgi_packet(v, body=body)
    s = connect(server.address(0))
    rnd = random.Random(7)
    i = 0
    while i < len(pkt):
        n = rnd.randint(1, 700)
        s.sendall(pkt[i:i + n])
        i += n
        time.sleep(0.001)
    data = recv_all(s)
    s.close()
    assert split_response(data)[1] == body


def test_modifiers_dispatch(server):
    data = raw(server.address(0), uwsgi_packet(NGINX_VARS, modifier1=6, modifier2=9))
    assert data.endswith(b"other modifier1=6 modifier2=9")
    data = raw(server.address(0), uwsgi_packet(NGINX_VARS, modifier1=7))
    assert data.startswith(b"HTTP/1.1 503")
    data = raw(server.address(0), uwsgi_packet(NGINX_VARS, modifier1=99))
    assert data.startswith(b"HTTP/1.1 503")


def test_stream_is_close_delimited(server):
    v = dict(NGINX_VARS, PATH_INFO="/stream", QUERY_STRING="n=3")
    head, body = split_response(raw(server.address(0), uwsgi_packet(v)))
    assert b"Transfer-Encoding" not in head and b"Content-Length" not in head
    assert body == b"chunk0\nchunk1\nchunk2\n"


def test_oversized_packet_closed_with_log(server):
    data = raw(server.address(0), bytes([0]) + (5000).to_bytes(2, "little") + bytes([0]) + b"x" * 5000)
    assert data == b""
    assert "invalid request block size: 5000 (max 4096)...skip" in server.log()


@pytest.mark.parametrize("request_line", [b"GET / HTTP/1.1", b"POST /form HTTP/1.0", b"OPTIONS * HTTP/1.1"])
def test_http_on_a_uwsgi_socket_gets_a_400_that_says_so(server, request_line):
    s = connect(server.address(0))
    s.sendall(request_line[:2])             # a first read shorter than a uwsgi header
    time.sleep(0.05)
    s.sendall(request_line[2:] + b"\r\nHost: x\r\n\r\n")
    data = recv_all(s)
    s.close()
    head, body = split_response(data)
    assert head.startswith(b"HTTP/1.1 400 Bad Request")
    assert b"uwsgi-protocol socket" in body and b"--http-socket" in body
    line = request_line.decode()
    assert f"HTTP request on a uwsgi socket ({line!r}): use --http-socket" in server.log()
    # the worker goes on serving uwsgi packets
    assert raw(server.address(0), uwsgi_packet(NGINX_VARS)).startswith(b"HTTP/1.1 200 OK")


def test_malformed_vars_closed_with_log(server):
    bad = b"\x05\x00KEY"   # key length runs past the end of the block
    data = raw(server.address(0), bytes([0]) + len(bad).to_bytes(2, "little") + bytes([0]) + bad)
    assert data == b""
    assert "invalid uwsgi packet" in server.log()


def test_too_many_vars_closed_with_log(server):
    v = {f"V{i}": "x" for i in range(40)}
    data = raw(server.address(0), uwsgi_packet(v))
    assert data == b""
    assert "invalid uwsgi packet" in server.log()


def test_bad_content_length_closed(server):
    data = raw(server.address(0), uwsgi_packet(dict(NGINX_VARS, CONTENT_LENGTH="abc")))
    assert data == b""
    assert "invalid CONTENT_LENGTH" in server.log()


def test_limit_post_413(server):
    data = raw(server.address(0), uwsgi_packet(dict(NGINX_VARS, CONTENT_LENGTH="60000")))
    assert data.startswith(b"HTTP/1.1 413")


def test_truncated_packet_times_out_quietly(server):
    s = connect(server.address(0))
    s.sendall(bytes([0, 100, 0, 0]) + b"\x01")
    t0 = time.monotonic()
    assert recv_all(s, timeout=15) == b""
    assert time.monotonic() - t0 < 10
    s.close()


def test_ping(server):
    assert raw(server.address(0), bytes([100, 0, 0, 0])) == bytes([100, 0, 0, 0])


def test_worker_survives_random_packets(server):
    rnd = random.Random(99)
    for _ in range(30):
        junk = bytes(rnd.randrange(256) for _ in range(rnd.randint(4, 200)))
        s = connect(server.address(0))
        s.settimeout(5)
        s.sendall(junk)
        s.shutdown(socket.SHUT_WR)
        try:
            s.recv(100)
        except OSError:
            pass
        s.close()
    assert raw(server.address(0), uwsgi_packet(dict(NGINX_VARS, PATH_INFO="/"))).endswith(b"Hello World")


def test_parse_vars_py_matches_codec():
    from uwsgid.net import packet
    v = {b"A": b"1", b"LONG": b"x" * 1000, b"E": b""}
    block = packet.encode_vars(v)
    assert parse_vars_py(block, 64) == v
    with pytest.raises(PacketError):
        parse_vars_py(block[:-3], 64)
    with pytest.raises(PacketError):
        parse_vars_py(block, 2)
