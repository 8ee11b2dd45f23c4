"""RPC: functions registered by either runtime, callable from either runtime in the same worker
(a plain Python call, no network hop), and over the uwsgi protocol with modifier1 173 from other
workers, other instances, or real uWSGI (`uwsgi.rpc("host:port", ...)`, `--route ... rpc:`).

Wire format (uWSGI's core/rpc.c and plugins/rpc): request = uwsgi header (modifier1 173, pktsize,
modifier2 0) + pktsize bytes holding an array of u16le-length-prefixed strings, the function
name first. Response = uwsgi header (modifier1 173, pktsize = result length, modifier2 0) + the
result; a result over 65535 bytes is sent as modifier2 5 + a vars dict with CONTENT_LENGTH,
followed by the raw result. Errors: uWSGI closes without answering; we answer modifier2 5 with
CONTENT_LENGTH 0 and RPC_ERROR (or RPC_NOT_FOUND) in the dict: a uWSGI client sees a failed call
(empty answer), our client raises RpcError with the remote message. Request modifier2 1 asks
for the raw result only; modifier2 2 is uWSGI's HTTP form (PATH_INFO /func/arg1/arg2).
"""

from __future__ import annotations

import struct
import threading

from uwsgid.plugins import api as core_api
from uwsgid.plugins.contract import Plugin
from uwsgid.services import wire
from uwsgid.services.spec import to_bytes
from uwsgid.util.log import log, log_exception

MODIFIER1 = 173
MAX_ARGS = 254
MAX_NAME = 255

_table: dict[bytes, object] = {}
_table_lock = threading.Lock()


class RpcError(RuntimeError):
    """An RPC function raised, or a remote call failed; the message says which and why."""


# ---- registry and local calls ----------------------------------------------------------

def register(name: bytes, fn) -> bool:
    if not name or len(name) > MAX_NAME:
        raise ValueError(f"rpc function name must be 1..{MAX_NAME} bytes (got {len(name)})")
    with _table_lock:
        _table[name] = fn
    wid = core_api.worker_id()
    label = name.decode("utf-8", "replace")
    if wid:
        log(f'registered RPC function "{label}" on worker {wid}')
    else:
        log(f'registered shared/inherited RPC function "{label}"')
    return True


def lookup(name: bytes):
    """The function registered under name, or None (routing's hook:NAME calls it directly)."""
    return _table.get(name)


def names() -> list[bytes]:
    return list(_table)


def _result_bytes(name: bytes, res) -> bytes:
    if res is None:
        return b""
    if isinstance(res, bytes):
        return res
    if isinstance(res, str):
        return res.encode("utf-8")
    if isinstance(res, (bytearray, memoryview)):
        return bytes(res)
    if isinstance(res, (int, float)) and not isinstance(res, bool):
        return to_bytes(res)
    raise RpcError(f"rpc function {name.decode('utf-8', 'replace')!r} returned {type(res).__name__}, "
                   "expected bytes or a string")


def call_local(name: bytes, args: list[bytes]) -> bytes | None:
    """None when no function has that name; RpcError when it raised."""
    if len(args) > MAX_ARGS:
        raise ValueError(f"rpc: at most {MAX_ARGS} arguments (got {len(args)})")
    fn = _table.get(name)
    if fn is None:
        return None
    try:
        res = fn(*args)
    except RpcError:
        raise
    except Exception as exc:
        raise RpcError(f"rpc function {name.decode('utf-8', 'replace')!r} failed: "
                       f"{type(exc).__name__}: {exc}") from exc
    return _result_bytes(name, res)


# ---- packet codec --------------------------------------------------------------------------

def encode_array(items: list[bytes]) -> bytes:
    out = bytearray()
    for it in items:
        if len(it) > 0xFFFF:
            raise ValueError(f"rpc: an argument is {len(it)} bytes, the protocol allows 65535")
        out += struct.pack("<H", len(it))
        out += it
    return bytes(out)


def decode_array(data: bytes) -> list[bytes]:
    items, pos, n = [], 0, len(data)
    while pos < n:
        if pos + 2 > n:
            raise ValueError("truncated rpc array")
        (ln,) = struct.unpack_from("<H", data, pos)
        pos += 2
        if pos + ln > n:
            raise ValueError("truncated rpc array item")
        items.append(bytes(data[pos:pos + ln]))
        pos += ln
    if len(items) > MAX_ARGS + 1:
        raise ValueError(f"rpc packet with {len(items) - 1} arguments (at most {MAX_ARGS})")
    return items


def encode_vars(pairs: dict[bytes, bytes]) -> bytes:
    out = bytearray()
    for k, v in pairs.items():
        out += struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
    return bytes(out)


def decode_vars(data: bytes) -> dict[bytes, bytes]:
    items = decode_array(data) if len(data) else []
    if len(items) % 2:
        raise ValueError("odd number of items in a uwsgi vars block")
    return {items[i]: items[i + 1] for i in range(0, len(items), 2)}


def request_packet(name: bytes, args: list[bytes]) -> bytes:
    if len(args) > MAX_ARGS:
        raise ValueError(f"rpc: at most {MAX_ARGS} arguments (got {len(args)})")
    body = encode_array([name, *args])
    if len(body) > 0xFFFF:
        raise ValueError(f"rpc packet of {len(body)} bytes: the protocol allows 65535")
    return struct.pack("<BHB", MODIFIER1, len(body), 0) + body


def response_packet(result: bytes) -> bytes:
    if len(result) <= 0xFFFF:
        return struct.pack("<BHB", MODIFIER1, len(result), 0) + result
    d = encode_vars({b"CONTENT_LENGTH": str(len(result)).encode()})
    return struct.pack("<BHB", MODIFIER1, len(d), 5) + d + result


def error_packet(message: str, not_found: bool = False) -> bytes:
    key = b"RPC_NOT_FOUND" if not_found else b"RPC_ERROR"
    d = encode_vars({b"CONTENT_LENGTH": b"0", key: message.encode("utf-8", "replace")[:60000]})
    return struct.pack("<BHB", MODIFIER1, len(d), 5) + d


# ---- remote calls --------------------------------------------------------------------------

def call_remote(node: str, name: bytes, args: list[bytes], timeout: float | None = None) -> bytes | None:
    packet = request_packet(name, args)
    label = f"{name.decode('utf-8', 'replace')!r} on {node}"
    try:
        with wire.connect(node, timeout or wire.timeout()) as s:
            s.sendall(packet)
            head = wire.recv_exact(s, 4)
            if len(head) == 0:
                raise RpcError(f"rpc {label}: no answer (unknown function or it failed there)")
            if len(head) < 4:
                raise RpcError(f"rpc {label}: truncated answer")
            _m1, size, m2 = struct.unpack("<BHB", head)
            data = wire.recv_exact(s, size)
            if len(data) < size:
                raise RpcError(f"rpc {label}: truncated answer")
            if m2 != 5:
                return data
            d = decode_vars(data)
            if b"RPC_ERROR" in d:
                raise RpcError(f"rpc {label}: {d[b'RPC_ERROR'].decode('utf-8', 'replace')}")
            if b"RPC_NOT_FOUND" in d:
                return None
            length = int(d.get(b"CONTENT_LENGTH", b"0"))
            body = wire.recv_exact(s, length)
            if len(body) < length:
                raise RpcError(f"rpc {label}: truncated answer")
            return body
    except (OSError, ValueError) as exc:
        if isinstance(exc, ValueError) and "rpc node" in str(exc):
            raise
        raise RpcError(f"rpc {label}: {exc}") from exc


# ---- serving modifier1 173 ---------------------------------------------------------------

def _packet_of(req) -> bytes:
    """The request's raw packet body. The data plane keeps it as req.packet for modifier1 173;
    failing that, the array is rebuilt from the vars it was parsed into (items paired up in
    order: exact for an even number of items with distinct keys), minus the SCRIPT_NAME the
    uwsgi parser adds when absent."""
    raw = getattr(req, "packet", None)
    if raw is not None:
        return bytes(raw)
    pairs = list(req.vars.items())
    if pairs and pairs[-1] == (b"SCRIPT_NAME", b"") and pktsize_of(req) != len(encode_vars(dict(pairs))):
        pairs.pop()
    items: list[bytes] = []
    for k, v in pairs:
        items += [k, v]
    return encode_array(items)


def pktsize_of(req) -> int:
    return int(getattr(req, "pktsize", -1) or -1)


class RpcPlugin(Plugin):
    name = "rpc"
    modifier1 = MODIFIER1

    def has_app(self) -> bool:
        return True

    def request(self, req):
        m2 = req.modifier2
        if m2 == 2:
            return self._http(req)
        try:
            items = decode_array(_packet_of(req))
        except ValueError as exc:
            log(f"invalid RPC request: {exc}")
            wire.write_raw(req, error_packet(f"invalid rpc request: {exc}"))
            return None
        if not items:
            log("Empty RPC request. skip.")
            wire.write_raw(req, error_packet("empty rpc request"))
            return None
        name, args = items[0], items[1:]
        try:
            result = call_local(name, args)
        except RpcError as exc:
            log_exception(f"RPC {name.decode('utf-8', 'replace')!r} failed:")
            wire.write_raw(req, error_packet(str(exc)))
            return None
        if result is None:
            log(f"RPC function {name.decode('utf-8', 'replace')!r} not found")
            wire.write_raw(req, error_packet(f"no rpc function named {name.decode('utf-8', 'replace')!r}", not_found=True))
            return None
        wire.write_raw(req, result if m2 == 1 else response_packet(result))
        return None

    def _http(self, req):
        path = req.vars.get(b"PATH_INFO", b"").lstrip(b"/")
        parts = [p for p in path.split(b"/") if p]
        if not parts:
            req.start_response(b"500 Internal Server Error", [(b"Content-Type", b"text/plain")])
            req.write(b"missing rpc function name in PATH_INFO\n")
            return None
        try:
            result = call_local(parts[0], parts[1:])
        except RpcError as exc:
            log_exception(f"RPC {parts[0].decode('utf-8', 'replace')!r} failed:")
            req.start_response(b"500 Internal Server Error", [(b"Content-Type", b"text/plain")])
            req.write(str(exc).encode("utf-8", "replace") + b"\n")
            return None
        if not result:
            req.start_response(b"404 Not Found", [(b"Content-Type", b"text/plain")])
            req.write(b"Not Found\n")
            return None
        accept = req.vars.get(b"HTTP_ACCEPT", b"*/*")
        ctype = b"application/binary" if accept in (b"*", b"*/*") else accept
        req.start_response(b"200 OK", [(b"Content-Type", ctype), (b"Content-Length", str(len(result)).encode())])
        req.write(result)
        return None


plugin = RpcPlugin()
