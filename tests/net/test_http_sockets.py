"""uwsgid.net.sockets in-process: address forms, bind errors, unix socket hygiene, the internal socket
for --http, and fd hand-over across a master re-exec (UWSGI_LISTEN_FDS)."""

from __future__ import annotations

import json
import os
import socket
import uuid

import pytest
from helpers import free_port

import uwsgid.config.core_options  # noqa: F401
from uwsgid.config.options import Options, lookup
from uwsgid.net import sockets


def make_opts(**kw) -> Options:
    o = Options()
    for name, value in kw.items():
        opt = lookup(name.replace("_", "-"))
        for v in (value if isinstance(value, list) and opt.multi else [value]):
            o.set(opt, v)
    return o


@pytest.mark.parametrize("addr,family,sockaddr", [
    ("127.0.0.1:8080", socket.AF_INET, ("127.0.0.1", 8080)),
    (":9090", socket.AF_INET, ("0.0.0.0", 9090)),
    ("[::1]:80", socket.AF_INET6, ("::1", 80)),
    ("localhost:81", socket.AF_INET, ("127.0.0.1", 81)),
    ("/tmp/x.sock", socket.AF_UNIX, "/tmp/x.sock"),
    ("@abstract", socket.AF_UNIX, "\0abstract"),
])
def test_parse_address(addr, family, sockaddr):
    fam, sa, _ = sockets.parse_address(addr)
    assert fam == family and sa == sockaddr


@pytest.mark.parametrize("addr", ["", "127.0.0.1", "127.0.0.1:http", "1.2.3.4:70000", "[::1]80"])
def test_parse_address_errors(addr):
    with pytest.raises(sockets.BindError):
        sockets.parse_address(addr)


def test_bind_in_use_is_one_line():
    port = free_port()
    first = sockets.bind_address(f"127.0.0.1:{port}")
    try:
        with pytest.raises(sockets.BindError) as e:
            sockets.bind_address(f"127.0.0.1:{port}")
        msg = str(e.value)
        assert "\n" not in msg and f"127.0.0.1:{port}" in msg and "in use" in msg
    finally:
        first.close()


def test_listener_fields_and_nonblocking():
    port = free_port()
    o = make_opts(http_socket=[f"127.0.0.1:{port}"], http_socket_modifier1=6, http_socket_modifier2=2,
                  socket=[":0"], listen=7)
    ls = sockets.bind_all(o)
    try:
        uw, http = ls
        assert (uw.proto, uw.modifier1, uw.internal) == ("uwsgi", 0, False)
        assert (http.proto, http.modifier1, http.modifier2, http.port) == ("http", 6, 2, port)
        assert http.name == f"127.0.0.1:{port}" and http.path is None
        assert not http.sock.getblocking()
        assert uw.host == "0.0.0.0" and uw.port > 0
    finally:
        for lst in ls:
            lst.close()


def test_http_router_gets_internal_uwsgi_socket():
    ls = sockets.bind_all(make_opts(http=[f"127.0.0.1:{free_port()}"]))
    try:
        [lst] = ls
        assert lst.internal and lst.proto == "uwsgi" and lst.host == "127.0.0.1" and lst.port > 0
    finally:
        for lst in ls:
            lst.close()
    # with an explicit --socket, no internal one
    ls = sockets.bind_all(make_opts(http=[f"127.0.0.1:{free_port()}"], socket=["127.0.0.1:0"]))
    try:
        assert [x.internal for x in ls] == [False]
    finally:
        for lst in ls:
            lst.close()


def test_unix_socket_stale_file_and_chmod(tmp_path):
    path = str(tmp_path / "s.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()   # the file stays, nobody listens: stale
    lst = sockets.bind_address(path, make_opts(chmod_socket="600"))
    try:
        assert lst.path == path and oct(os.stat(path).st_mode & 0o777) == "0o600"
        # a live socket is not stolen
        with pytest.raises(sockets.BindError) as e:
            sockets.bind_address(path)
        assert path in str(e.value)
    finally:
        lst.close(unlink=True)
    assert not os.path.exists(path)


def test_unix_path_that_is_not_a_socket(tmp_path):
    path = tmp_path / "regular.sock"
    path.write_text("data")
    with pytest.raises(sockets.BindError):
        sockets.bind_address(str(path))
    assert path.read_text() == "data"


def test_chmod_socket_default_666(tmp_path):
    path = str(tmp_path / "d.sock")
    lst = sockets.bind_address(path, make_opts(chmod_socket="666"))
    try:
        assert oct(os.stat(path).st_mode & 0o777) == "0o666"
    finally:
        lst.close(unlink=True)


def test_abstract_socket():
    name = "@uwsgid-t-" + uuid.uuid4().hex[:8]
    lst = sockets.bind_address(name)
    try:
        c = socket.socket(socket.AF_UNIX)
        c.connect("\0" + name[1:])
        c.close()
        assert lst.path is None
    finally:
        lst.close()


def test_bind_all_failure_closes_what_was_bound():
    port = free_port()
    taken = sockets.bind_address(f"127.0.0.1:{port}")
    free = free_port()
    try:
        with pytest.raises(sockets.BindError):
            sockets.bind_all(make_opts(socket=[f"127.0.0.1:{free}", f"127.0.0.1:{port}"]))
        again = sockets.bind_address(f"127.0.0.1:{free}")   # released
        again.close()
    finally:
        taken.close()


def test_reuse_port():
    port = free_port()
    o = make_opts(reuse_port=True)
    a = sockets.bind_address(f"127.0.0.1:{port}", o)
    b = sockets.bind_address(f"127.0.0.1:{port}", o)
    a.close()
    b.close()


def test_export_and_adopt_listeners(monkeypatch):
    port = free_port()
    o = make_opts(http_socket=[f"127.0.0.1:{port}"], socket=["127.0.0.1:0"])
    ls = sockets.bind_all(o)
    fds = [x.fd for x in ls]
    desc = sockets.export_listeners(ls)
    assert all(os.get_inheritable(fd) for fd in fds)
    # what a re-exec'd master sees: the same fds, described in the environment
    monkeypatch.setenv(sockets.ENV_FDS, desc)
    for x in ls:
        x.sock.detach()   # the "old process" forgets them without closing
    adopted = sockets.bind_all(o)
    try:
        assert sorted(x.fd for x in adopted) == sorted(fds)
        assert [x.proto for x in adopted] == ["uwsgi", "http"]
        assert adopted[1].port == port
        assert sockets.ENV_FDS not in os.environ
    finally:
        for x in adopted:
            x.close()


def test_inherited_but_unwanted_fds_are_closed(monkeypatch):
    lst = sockets.bind_address("127.0.0.1:0")
    fd = lst.sock.detach()
    monkeypatch.setenv(sockets.ENV_FDS, json.dumps([{"fd": fd, "name": "127.0.0.1:0", "proto": "http"}]))
    ls = sockets.bind_all(make_opts(socket=["127.0.0.1:0"]))
    try:
        with pytest.raises(OSError):
            os.fstat(fd)   # closed: not wanted any more (different protocol)
    finally:
        for x in ls:
            x.close()


def test_from_fd():
    lst = sockets.bind_address("127.0.0.1:0")
    fd = lst.sock.detach()
    again = sockets.Listener.from_fd(fd, "127.0.0.1:0", "http", 6, 1)
    try:
        assert again.port > 0 and again.proto == "http" and again.modifier1 == 6
    finally:
        again.close()


def test_chown_socket(tmp_path):
    path = str(tmp_path / "o.sock")
    me = os.getuid()
    lst = sockets.bind_address(path, make_opts(chown_socket=f"{me}:{os.getgid()}"))
    try:
        assert os.stat(path).st_uid == me
    finally:
        lst.close(unlink=True)
    with pytest.raises(sockets.BindError) as e:
        sockets.bind_address(str(tmp_path / "p.sock"), make_opts(chown_socket="no-such-user-xyz"))
    assert "no-such-user-xyz" in str(e.value)
    assert not os.path.exists(tmp_path / "p.sock")


def test_listen_over_somaxconn_is_an_error():
    maxconn = sockets._somaxconn()
    if not maxconn:
        pytest.skip("no /proc/sys/net/core/somaxconn")
    with pytest.raises(sockets.BindError) as e:
        sockets.bind_all(make_opts(socket=["127.0.0.1:0"], listen=maxconn + 1))
    assert "somaxconn" in str(e.value)
    ls = sockets.bind_all(make_opts(socket=["127.0.0.1:0"], listen=maxconn))
    for x in ls:
        x.close()


def test_tcp_sockets_defer_accept_by_default_as_uwsgi_does():
    def deferred(proto: str, **opts) -> bool:
        lst = sockets.bind_address(f"127.0.0.1:{free_port()}", make_opts(**opts), proto)
        try:
            # the kernel rounds the seconds to its SYN-ACK retransmission steps: non-zero is what counts
            return lst.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT) > 0
        finally:
            lst.sock.close()

    assert deferred("uwsgi", socket_timeout=7)
    assert not deferred("uwsgi", no_defer_accept=True)
    assert deferred("http")
    assert not deferred("http", no_defer_accept=True)
