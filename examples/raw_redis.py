"""A small Redis-protocol server on the uWSGI cache, in Python (the Lua twin is raw_redis.lua):
PING, GET, SET (with EX seconds), DEL and QUIT, enough for redis-cli and the `redis` package.

    ./uwsgi --raw-socket 127.0.0.1:6380 --python-raw examples/raw_redis.py \\
            --cache2 name=redis,items=1000,blocksize=65536 --async 16 --greenlet
    redis-cli -p 6380 set greeting hello && redis-cli -p 6380 get greeting

The values live in the instance's shared cache: a web app of the same instance (Python or Lua)
reads them with uwsgi.cache_get("KEY", "redis").
Parsing is strict and small: RESP arrays of bulk strings (what clients send) and inline
commands (a line of words); anything else is answered with an -ERR line and the connection is
closed, as Redis does on a protocol error. An unknown command or a wrong argument count is an
-ERR line and the connection goes on.
"""

import uwsgi

CACHE = "redis"
MAX_ARGS = 16
MAX_BULK = 64 * 1024
MAX_LINE = 64 * 1024


class ProtocolError(Exception):
    pass


def _count(text: bytes, limit: int, what: str) -> int:
    if not text.isdigit() or int(text) > limit:
        raise ProtocolError(f"invalid {what}")
    return int(text)


def _line(sock) -> bytes | None:
    try:
        line = sock.recvline(MAX_LINE)
    except ValueError:
        raise ProtocolError("too big inline request") from None
    if not line:
        return None
    if not line.endswith(b"\r\n"):
        if line.endswith(b"\n"):
            raise ProtocolError("expected CRLF at the end of a line")
        return None     # the client left in the middle of a line
    return line[:-2]


def read_command(sock) -> list[bytes] | None:
    """The next command's words; None when the client is gone."""
    line = _line(sock)
    if line is None:
        return None
    if not line.startswith(b"*"):
        return line.split()          # an inline command (an empty line: nothing to do)
    args = []
    for _ in range(_count(line[1:], MAX_ARGS, "multibulk length")):
        head = _line(sock)
        if head is None:
            return None
        if not head.startswith(b"$"):
            raise ProtocolError(f"expected '$', got '{head[:1].decode('latin-1')}'")
        size = _count(head[1:], MAX_BULK, "bulk length")
        data = sock.recv_exactly(size + 2)
        if len(data) < size + 2:
            return None
        if data[-2:] != b"\r\n":
            raise ProtocolError("expected CRLF after a bulk string")
        args.append(data[:-2])
    return args


def bulk(value: bytes | None) -> bytes:
    if value is None:
        return b"$-1\r\n"
    return b"$%d\r\n%b\r\n" % (len(value), value)


def error(text: str) -> bytes:
    return b"-ERR " + text.encode() + b"\r\n"


def execute(args: list[bytes]) -> bytes:
    name = args[0].upper()
    n = len(args)
    if name == b"PING" and n <= 2:
        return b"+PONG\r\n" if n == 1 else bulk(args[1])
    if name == b"GET" and n == 2:
        return bulk(uwsgi.cache_get(args[1], CACHE))
    if name == b"SET" and n in (3, 5):
        expires = 0
        if n == 5:
            if args[3].upper() != b"EX" or not args[4].isdigit() or int(args[4]) < 1:
                return error("syntax error")
            expires = int(args[4])
        if not uwsgi.cache_update(args[1], args[2], expires, CACHE):
            return error("the value does not fit in the cache")
        return b"+OK\r\n"
    if name == b"DEL" and n >= 2:
        return b":%d\r\n" % sum(1 for k in args[1:] if uwsgi.cache_del(k, CACHE))
    if name in (b"PING", b"GET", b"SET", b"DEL"):
        return error(f"wrong number of arguments for '{name.decode('latin-1').lower()}' command")
    return error(f"unknown command '{args[0][:64].decode('latin-1')}'")


def application(sock):
    while True:
        try:
            args = read_command(sock)
        except ProtocolError as e:
            sock.sendall(error(f"Protocol error: {e}"))
            return
        if args is None:
            return
        if not args:
            continue
        if args[0].upper() == b"QUIT":
            sock.sendall(b"+OK\r\n")
            return
        sock.sendall(execute(args))
