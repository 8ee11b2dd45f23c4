"""The uwsgi protocol between nodes, as the services speak it (RPC, remote signals): connecting
to a node ("host:port", a unix socket path, or "@name" in the abstract namespace) within the
socket timeout, reading an exact number of bytes, and answering a request with raw bytes (a
uwsgi packet) instead of an HTTP response."""

from __future__ import annotations

import socket

from uwsgid.plugins import api as core_api


def connect(node: str, timeout: float) -> socket.socket:
    if node.startswith("/") or node.startswith("@"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        addr = "\0" + node[1:] if node.startswith("@") else node
    else:
        host, sep, port = node.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"rpc node must be host:port or a unix socket path (got {node!r})")
        host = host.strip("[]") or "127.0.0.1"
        s = socket.create_connection((host, int(port)), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s
    s.settimeout(timeout)
    s.connect(addr)
    return s


def recv_exact(s: socket.socket, n: int) -> bytes:
    """n bytes, or fewer when the peer closed first."""
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def timeout() -> float:
    """--socket-timeout of the running server (4 s without one)."""
    srv = core_api.server
    t = getattr(getattr(srv, "opts", None), "socket_timeout", None) if srv is not None else None
    return float(t) if t else 4.0


def write_raw(req, data: bytes) -> None:
    """Answer bytes that are not an HTTP response (an RPC packet): req.write_raw when the data
    plane has it, else straight to the connection, marking the response as sent."""
    w = getattr(req, "write_raw", None)
    if w is not None:
        w(data)
        return
    req.status = 200           # for the request log; nothing else is sent after this
    req.headers_sent = True
    req.response_size += len(data)
    req.keepalive = False
    req.conn.send(data)
