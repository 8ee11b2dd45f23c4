"""ASGI apps for tests/plugins/cffi/test_asgi*.py (on --pythonpath tests/plugins/cffi).

MARKS (an environment variable) names a directory where the apps drop files that the tests
read: what the app saw (lifespan, a client's disconnect, a background task), since the app runs
in another process."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import resource


def mark(name: str, text: str = "") -> None:
    d = os.environ.get("MARKS")
    if d:
        with open(os.path.join(d, name), "a") as f:
            f.write(text + "\n")


def rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (resource.getpagesize() // 1024)


async def _lifespan(receive, send, state):
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            state["started"] = os.getpid()
            mark("startup", str(os.getpid()))
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            mark("shutdown", str(os.getpid()))
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _text(send, body: bytes, status: int = 200):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"), (b"x-app", b"raw")]})
    await send({"type": "http.response.body", "body": body})


async def _bad_header(send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-bad", b"a\r\nInjected: 1")]})
    await send({"type": "http.response.body", "body": b"never"})


async def _read_all(receive) -> tuple[int, str, int]:
    size, chunks, h = 0, 0, hashlib.md5()
    while True:
        msg = await receive()
        body = msg.get("body", b"")
        size += len(body)
        chunks += 1
        h.update(body)
        if not msg.get("more_body"):
            return size, h.hexdigest(), chunks


async def raw(scope, receive, send):
    """A plain ASGI 3 app with lifespan."""
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send, scope["state"])
    path = scope["path"]
    if path == "/sleep":
        mark("sleeping")        # a test stops or reloads once every request is in here
        await asyncio.sleep(0.2)
        return await _text(send, b"slept")
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for i in range(3):
            await send({"type": "http.response.body", "body": b"chunk%d\n" % i, "more_body": True})
            await asyncio.sleep(0.3)
        return await send({"type": "http.response.body", "body": b"end\n"})
    if path == "/big":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for _ in range(20):
            await send({"type": "http.response.body", "body": b"x" * (1 << 20), "more_body": True})
        return await send({"type": "http.response.body", "body": b""})
    if path == "/upload":
        before = rss_kb()
        size, digest, chunks = await _read_all(receive)
        body = json.dumps({"size": size, "md5": digest, "chunks": chunks, "rss_before": before,
                           "rss_after": rss_kb()}).encode()
        return await _text(send, body)
    if path.startswith("/later"):     # answered after an await: the lane defers it (lane_defer.c)
        await asyncio.sleep(0.05)
        if path == "/later-stream":     # then streams: the Python path takes it
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"one,", "more_body": True})
            await asyncio.sleep(0.02)
            return await send({"type": "http.response.body", "body": b"two"})
        if path == "/later-boom":
            raise RuntimeError("boom after an await")
        if path == "/later-disconnect":     # then waits for the client to go
            msg = await receive()
            msg = await receive()
            mark("later-disconnect", msg["type"])
            return
        if path == "/later-none":       # returns without a response
            return
        if path == "/later-pid":
            return await _text(send, str(os.getpid()).encode())
        return await _text(send, b"later " + path.encode())
    if path == "/wait-disconnect":
        await _read_all(receive)
        msg = await receive()
        mark("disconnect", msg["type"])
        return
    if path == "/stream-forever":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        try:
            while True:
                await send({"type": "http.response.body", "body": b"tick\n", "more_body": True})
                await asyncio.sleep(0.05)
        except OSError as e:
            mark("send-error", type(e).__name__)
            raise
    if path == "/flood":        # the client reads nothing: send() must wait, not buffer
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        n = 0
        try:
            while n < 2000:
                await send({"type": "http.response.body", "body": b"f" * (1 << 20), "more_body": True})
                n += 1
                mark("http-flood", f"{n} {rss_kb()}")
        except OSError:
            mark("http-flood-end", f"OSError {n}")
            raise
        return await send({"type": "http.response.body", "body": b""})
    if path == "/task":         # the request's task, from its first step (anyio's cancel scopes need it)
        first = asyncio.current_task()
        await asyncio.sleep(0)
        again = asyncio.current_task()
        return await _text(send, b"%r %r" % (first is not None, first is again))
    if path == "/boom-after":   # fails once its response is out (the request log shows 200)
        await _text(send, b"sent")
        raise RuntimeError("boom after the response")
    if path == "/bad-header":
        return await _bad_header(send)
    if path == "/boom":
        raise RuntimeError("boom in the app")
    if path.startswith("/scope") or path.startswith("/a/scope"):
        out = {k: v for k, v in scope.items() if k not in ("state", "headers")}
        out["headers"] = [[n.decode(), v.decode()] for n, v in scope["headers"]]
        out["state"] = dict(scope["state"])
        return await _text(send, json.dumps(out, default=lambda o: o.decode("latin-1")).encode())
    if path == "/prune":        # many cancelled timers: asyncio prunes its timer heap (a new list)
        loop = asyncio.get_running_loop()
        handles = [loop.call_later(100, lambda: None) for _ in range(300)]
        for h in handles[:250]:
            h.cancel()
        await asyncio.sleep(0.05)
        await asyncio.sleep(0.05)
        for h in handles[250:]:
            h.cancel()
        return await _text(send, str(os.getpid()).encode())
    if path == "/pid":
        return await _text(send, str(os.getpid()).encode())
    if path == "/stuck":        # blocks the worker's loop: only harakiri ends it
        import time
        time.sleep(60)
    if path == "/hang":         # awaits for ever: harakiri ends it too (as for any request)
        await asyncio.sleep(60)
    return await _text(send, b"hello from asgi " + path.encode())


async def ws(scope, receive, send):
    """A raw ASGI WebSocket app (mounted next to `raw`): echo, subprotocols, close codes, refusal."""
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send, {})
    if scope["type"] == "http":
        return await _text(send, b"plain http")
    path = scope["path"]
    assert (await receive())["type"] == "websocket.connect"
    if path == "/refuse":
        return await send({"type": "websocket.close"})
    if path == "/deny":
        await send({"type": "websocket.http.response.start", "status": 401,
                    "headers": [(b"content-type", b"text/plain"), (b"www-authenticate", b"Basic")]})
        return await send({"type": "websocket.http.response.body", "body": b"who are you"})
    protos = scope["subprotocols"]
    await send({"type": "websocket.accept", "subprotocol": protos[-1] if protos else None,
                "headers": [(b"x-ws", b"yes")]})
    if path == "/scope":
        out = {k: v for k, v in scope.items() if k not in ("state", "headers")}
        return await send({"type": "websocket.send", "text": json.dumps(out, default=lambda o: o.decode())})
    if path == "/close-4001":
        return await send({"type": "websocket.close", "code": 4001, "reason": "bye"})
    if path == "/flood":        # the client does not read: send() must wait, not buffer
        n = 0
        try:
            while n < 4000:
                await send({"type": "websocket.send", "bytes": b"f" * 65536})
                n += 1
                if n % 50 == 0:
                    mark("flood", f"{n} {rss_kb()}")
        except OSError:
            mark("flood-end", f"OSError {n}")
        return
    while True:
        msg = await receive()
        if msg["type"] == "websocket.disconnect":
            mark("ws-disconnect", str(msg["code"]))
            return
        if msg.get("text") == "boom":
            raise RuntimeError("boom in the websocket app")
        if msg.get("text") is not None:
            await send({"type": "websocket.send", "text": "echo:" + msg["text"]})
        else:
            await send({"type": "websocket.send", "bytes": b"echo:" + msg["bytes"]})


async def failing(scope, receive, send):
    """Its lifespan startup fails."""
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "the database is down"})
        return
    await _text(send, b"never")


async def raising(scope, receive, send):
    """Its lifespan startup raises."""
    if scope["type"] == "lifespan":
        await receive()
        raise RuntimeError("cannot reach the cache")
    await _text(send, b"never")


class Asgi2:
    """An ASGI 2 app (served with --asgi)."""

    def __init__(self, scope):
        self.scope = scope

    async def __call__(self, receive, send):
        if self.scope["type"] != "http":
            raise ValueError("http only")
        await _text(send, b"asgi2 " + self.scope["path"].encode())


def wsgi(environ, start_response):
    """A WSGI app to mount next to the ASGI ones."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    if environ["PATH_INFO"] == "/asyncio-run":     # its own event loop, in the ASGI worker's thread
        return [asyncio.run(_answer(b"asyncio.run in wsgi"))]
    return [b"hello from wsgi " + environ["PATH_INFO"].encode()]


async def _answer(text: bytes) -> bytes:
    await asyncio.sleep(0)
    return text
