"""A line-echo server on a raw TCP socket, in Python (the Lua twin is raw_echo.lua).

    ./uwsgi --raw-socket 127.0.0.1:7000 --python-raw examples/raw_echo.py
    ./uwsgi --raw-socket 127.0.0.1:7000 --python-raw examples/raw_echo.py --async 64 --greenlet
    printf 'hello\\nworld\\n' | nc -q1 127.0.0.1 7000

Each connection gets every line it sends back; it ends when the client closes (or stays
silent past --socket-timeout). Under --async N --greenlet one worker serves N connections at
once: a recvline that waits suspends only its own core.
"""

MAX_LINE = 4 * 1024 * 1024


def application(sock):
    while True:
        try:
            line = sock.recvline(MAX_LINE)
        except ValueError:
            sock.sendall(b"line too long\n")
            return
        if not line:
            return
        sock.sendall(line)
