"""Apps for tests/plugins/cffi/test_asgi_stream.py (on --pythonpath tests/plugins/cffi): ASGI apps
that watch their request bodies arrive, and a WSGI app mounted beside them. What the apps see
goes to files in $MARKS (asgi_apps.mark), the app running in another process."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os

from asgi_apps import mark, rss_kb


async def _json(send, data: dict, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(data).encode()})


async def app(scope, receive, send):
    """/read: reads the body, marks its first chunk, answers size, md5, chunk count;
    /wait-gone: reads until http.disconnect and marks it; /ignore: answers without reading;
    /s/...: the Starlette app below."""
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            await send({"type": msg["type"] + ".complete"})
            if msg["type"] == "lifespan.shutdown":
                return
    path = scope["path"][len(scope["root_path"]):]    # the same paths under a --mount
    if path.startswith("/s/"):
        await _starlette()(scope, receive, send)
        return
    if path == "/ignore":
        await _json(send, {"ignored": True, "pid": os.getpid()})
        return
    size, chunks, h = 0, 0, hashlib.md5()
    tag = dict(scope["headers"]).get(b"x-tag", b"").decode()
    if path == "/lazy":     # receive() only once the test says go: the client must wait meanwhile
        while not os.path.exists(os.path.join(os.environ["MARKS"], f"go-{tag}")):
            await asyncio.sleep(0.02)
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            mark(f"gone-{tag}", str(size))
            return
        body = msg["body"]
        if body and size == 0:
            mark(f"first-{tag}", str(len(body)))
        size += len(body)
        chunks += 1
        h.update(body)
        if not msg.get("more_body"):
            break
    if path == "/wait-gone":    # the body ended although the client should have gone first
        mark(f"complete-{tag}", str(size))
    await _json(send, {"size": size, "md5": h.hexdigest(), "chunks": chunks, "path": path})


_app = None


def _starlette():
    global _app
    if _app is None:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def upload(request: Request):
            """Sums a large upload through request.stream(), with the worker's RSS around it."""
            start = peak = rss_kb()
            size = chunks = 0
            async for chunk in request.stream():
                if not size:
                    mark(f"first-{request.headers.get('x-tag', '')}", str(len(chunk)))
                size += len(chunk)
                chunks += 1
                if chunks % 16 == 0:
                    peak = max(peak, rss_kb())
            peak = max(peak, rss_kb())
            return JSONResponse({"size": size, "chunks": chunks, "rss_start_kb": start, "rss_peak_kb": peak})
        _app = Starlette(routes=[Route("/s/upload", upload, methods=["POST"])])
    return _app


def wsgi(environ, start_response):
    """A WSGI app beside the ASGI one: its body is whole before it runs, as always."""
    data = environ["wsgi.input"].read()
    body = json.dumps({"size": len(data), "md5": hashlib.md5(data).hexdigest(), "wsgi": True}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
