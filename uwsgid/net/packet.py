"""The uwsgi packet codec, Python face (the uwsgi protocol, the --http router, tests).

Packet: a 4-byte header (u8 modifier1, u16le datasize, u8 modifier2), then `datasize` bytes
of vars, each u16le key length, key, u16le value length, value. A zero-length key, a length
running past the end, or more than max_vars vars is a PacketError.

parse_vars uses the C codec (_uwsgi, built from uwsgi.h + core/packet.c) when it is
importable and faster; the pure-Python implementation beside it has the same semantics
(tests run both against each other and an oracle). Set UWSGI_PACKET_PURE=1 to force Python.
"""

from __future__ import annotations

import os
import struct
import threading

HEADER_SIZE = 4
_HEADER = struct.Struct("<BHB")
_U16 = struct.Struct("<H")


class PacketError(ValueError):
    """A malformed uwsgi packet; the message says what is wrong."""


def parse_header(data) -> tuple[int, int, int]:
    """(modifier1, datasize, modifier2) from the first 4 bytes of data."""
    if len(data) < HEADER_SIZE:
        raise PacketError(f"truncated uwsgi header: {len(data)} of 4 bytes")
    return _HEADER.unpack_from(data)


# --- pure Python -----------------------------------------------------------------------------

def parse_vars_py(data, max_vars: int = 64) -> dict[bytes, bytes]:
    if max_vars < 0:
        raise PacketError(f"max_vars must be >= 0, not {max_vars}")
    buf = data if isinstance(data, bytes) else bytes(data)
    end = len(buf)
    out: dict[bytes, bytes] = {}
    pos = count = 0
    while pos < end:
        if end - pos < 2:
            raise PacketError(f"truncated uwsgi vars: key length at offset {pos} runs past the end ({end})")
        klen = buf[pos] | (buf[pos + 1] << 8)
        if klen == 0:
            raise PacketError(f"empty key in uwsgi vars at offset {pos}")
        kstart = pos + 2
        kend = kstart + klen
        if kend + 2 > end:
            what = "key" if kend > end else "value length"
            raise PacketError(f"truncated uwsgi vars: {what} at offset {kstart if kend > end else kend} "
                              f"runs past the end ({end})")
        vlen = buf[kend] | (buf[kend + 1] << 8)
        vstart = kend + 2
        pos = vstart + vlen
        if pos > end:
            raise PacketError(f"truncated uwsgi vars: value at offset {vstart} ({vlen} bytes) runs past the end ({end})")
        count += 1
        if count > max_vars:
            raise PacketError(f"too many uwsgi vars (more than {max_vars})")
        out[buf[kstart:kend]] = buf[vstart:pos]
    return out


def encode_vars(vars: dict[bytes, bytes]) -> bytes:
    """The vars block for vars (keys and values bytes, keys non-empty, each at most 65535 bytes)."""
    pack = _U16.pack
    parts = []
    append = parts.append
    try:
        for k, v in vars.items():
            if not k:
                raise PacketError("empty key in uwsgi vars")
            append(pack(len(k)))
            append(k)
            append(pack(len(v)))
            append(v)
    except struct.error:
        raise PacketError(f"uwsgi var {k[:40]!r} is too long (key and value at most 65535 bytes)") from None
    return b"".join(parts)


def build_packet(modifier1: int, vars: dict[bytes, bytes], modifier2: int = 0) -> bytes:
    """Header + vars: a whole uwsgi request packet (the body, if any, follows it)."""
    body = encode_vars(vars)
    if len(body) > 0xFFFF:
        raise PacketError(f"uwsgi vars block of {len(body)} bytes exceeds 65535")
    try:
        return _HEADER.pack(modifier1, len(body), modifier2) + body
    except struct.error:
        raise PacketError(f"modifiers must be 0-255 (got {modifier1}, {modifier2})") from None


# --- C codec ---------------------------------------------------------------------------------

_ERRORS = {}


def _load_c():
    if os.environ.get("UWSGI_PACKET_PURE"):
        return None
    try:
        import _uwsgi
    except ImportError:
        return None
    lib = _uwsgi.lib
    if not hasattr(lib, "uwsgi_parse_vars_split"):   # an older build: the pure-Python codec
        return None
    _ERRORS.update({
        lib.UWSGI_ERR_EMPTY_KEY: "empty key in uwsgi vars",
        lib.UWSGI_ERR_TRUNCATED: "truncated uwsgi vars: a length runs past the end",
        lib.UWSGI_ERR_TOO_MANY: "too many uwsgi vars",
        lib.UWSGI_ERR_ARGS: "invalid uwsgi vars block",
    })
    return _uwsgi


_c = _load_c()
_local = threading.local()     # per-thread output buffers (workers may run --threads)
# Behind one front end every request sends the same var names in the same order: the joined
# names map to a tuple of bytes keys made once (their hashes cached), so a packet costs one
# split, of its values. Bounded: a client varying its header names cannot grow it for ever.
_keys: dict[bytes, tuple] = {}
_KEYS_MAX = 256


class _Buffers:
    __slots__ = ("cap", "keys", "vals", "lens", "kview", "vview")

    def __init__(self, cap: int):
        ffi = _c.ffi
        self.cap = cap
        self.keys = ffi.new("char[]", cap)
        self.vals = ffi.new("char[]", cap)
        self.lens = ffi.new("uint32_t[2]")
        self.kview = ffi.buffer(self.keys)
        self.vview = ffi.buffer(self.vals)


def _buffers(size: int) -> _Buffers:
    """This thread's buffers, made (or grown) to hold a vars block of `size` bytes."""
    b = _local.bufs = _Buffers(max(size, 4096))   # --buffer-size's default: grown if needed
    return b


def _c_error(n: int, max_vars: int) -> PacketError:
    if n == _c.lib.UWSGI_ERR_TOO_MANY:
        return PacketError(f"too many uwsgi vars (more than {max_vars})")
    return PacketError(_ERRORS.get(n, f"bad uwsgi vars (error {n})"))


def parse_vars_c(data, max_vars: int = 64) -> dict[bytes, bytes]:
    if max_vars < 0:
        raise PacketError(f"max_vars must be >= 0, not {max_vars}")
    buf = data if isinstance(data, bytes) else bytes(data)
    size = len(buf)
    try:
        b = _local.bufs
    except AttributeError:
        b = None
    if b is None or b.cap < size:
        b = _buffers(size)
    n = _c.lib.uwsgi_parse_vars_split(buf, size, max_vars, b.keys, b.vals, b.cap, b.lens)
    if n <= 0:
        if n == 0:
            return {}
        raise _c_error(n, max_vars)
    lens = b.lens
    kb = b.kview[:lens[0]]
    keys = _keys.get(kb)
    if keys is None or len(keys) != n:   # (a NUL inside a name can make two lists join alike)
        keys = kb.split(b"\0")
        if len(keys) != n:
            return _parse_offsets(buf, max_vars)   # a NUL inside a key
        keys = tuple(keys)
        if len(_keys) < _KEYS_MAX:
            _keys[kb] = keys
    vals = b.vview[:lens[1]].split(b"\0")
    if len(vals) != n:
        return _parse_offsets(buf, max_vars)       # a NUL inside a value
    return dict(zip(keys, vals))


def _parse_offsets(buf: bytes, max_vars: int) -> dict[bytes, bytes]:
    """Any packet, NUL bytes in names or values included: slices by the C codec's offsets."""
    ffi, lib = _c.ffi, _c.lib
    offs = ffi.new("uint32_t[]", 4 * max(max_vars, 1))
    n = lib.uwsgi_parse_vars(buf, len(buf), max_vars, offs)
    if n < 0:
        raise _c_error(n, max_vars)
    it = iter(ffi.unpack(offs, 4 * n))
    return {buf[ko:ko + kl]: buf[vo:vo + vl] for ko, kl, vo, vl in zip(it, it, it, it)}


# Measured on this 2-core box, 16 vars from nginx (instructions per call): the split form
# ~21k, the offsets form ~50k, the pure-Python loop ~70k (building the dict dominates). C when built.
parse_vars = parse_vars_c if _c is not None else parse_vars_py
