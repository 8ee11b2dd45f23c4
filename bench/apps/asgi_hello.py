"""The ASGI bench app (bench/harness/scenarios.py, asgi-*): "/" answers hello, "/sleep" after
10 ms of asyncio.sleep (Granian's benchmark shape for I/O-bound apps). Plain ASGI 3, no
framework, so the figures are the servers'."""

import asyncio

_HEAD = {"type": "http.response.start", "status": 200,
         "headers": [(b"content-type", b"text/plain"), (b"content-length", b"12")]}
_HELLO = {"type": "http.response.body", "body": b"Hello World!"}
_SLEPT = {"type": "http.response.body", "body": b"slept 10ms!\n"}


async def app(scope, receive, send):
    if scope["type"] != "http":
        return      # lifespan: not spoken (every server then serves without it)
    if scope["path"] == "/sleep":
        await asyncio.sleep(0.010)
        await send(_HEAD)
        await send(_SLEPT)
        return
    await send(_HEAD)
    await send(_HELLO)
