"""The ASGI bench app (bench/harness/scenarios.py, asgi-*): "/" answers hello, "/sleep" after
10 ms of asyncio.sleep (Granian's benchmark shape for I/O-bound apps), and a WebSocket at any
path echoes each message (asgi-ws-echo). Plain ASGI 3, no framework, so the figures are the
servers'."""

import asyncio

_HEAD = {"type": "http.response.start", "status": 200,
         "headers": [(b"content-type", b"text/plain"), (b"content-length", b"12")]}
_HELLO = {"type": "http.response.body", "body": b"Hello World!"}
_SLEPT = {"type": "http.response.body", "body": b"slept 10ms!\n"}


async def app(scope, receive, send):
    if scope["type"] == "websocket":
        return await _echo(receive, send)
    if scope["type"] != "http":
        return      # lifespan: not spoken (every server then serves without it)
    if scope["path"] == "/sleep":
        await asyncio.sleep(0.010)
        await send(_HEAD)
        await send(_SLEPT)
        return
    await send(_HEAD)
    await send(_HELLO)


async def _echo(receive, send):
    await receive()     # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        msg = await receive()
        if msg["type"] == "websocket.disconnect":
            return
        if msg.get("text") is not None:
            await send({"type": "websocket.send", "text": msg["text"]})
        else:
            await send({"type": "websocket.send", "bytes": msg["bytes"]})
