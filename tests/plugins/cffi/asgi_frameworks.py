"""Starlette, FastAPI and Django ASGI apps for tests/plugins/cffi/test_asgi_frameworks.py (on
--pythonpath tests/plugins/cffi). Files the apps drop for the tests go in $MARKS (asgi_apps.mark)."""

# no `from __future__ import annotations`: FastAPI reads the annotations of the endpoints
# defined inside fastapi_app(), whose names are local there
import asyncio
import contextlib

from asgi_apps import mark


def starlette_app():
    from starlette.applications import Starlette
    from starlette.endpoints import WebSocketEndpoint
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
    from starlette.routing import Route, WebSocketRoute

    @contextlib.asynccontextmanager
    async def lifespan(app):
        mark("starlette-startup")
        yield {"greeting": "hi from lifespan"}
        mark("starlette-shutdown")

    async def home(request: Request):
        return PlainTextResponse(f"starlette {request.state.greeting} {request.url.path}")

    async def stream(request: Request):
        slow = bool(request.query_params.get("slow"))

        async def gen():
            for i in range(1000):
                yield f"line {i}\n"
                if slow:
                    mark("starlette-stream-line", str(i))
                    await asyncio.sleep(0.05)
        return StreamingResponse(gen(), media_type="text/plain")

    async def upload(request: Request):
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return JSONResponse({"size": size})

    async def disconnect(request: Request):
        for _ in range(200):
            if await request.is_disconnected():
                mark("starlette-disconnected")
                return PlainTextResponse("gone")
            await asyncio.sleep(0.05)
        return PlainTextResponse("still there")

    class Echo(WebSocketEndpoint):
        encoding = "text"

        async def on_connect(self, websocket):
            await websocket.accept(subprotocol="chat" if "chat" in websocket.scope["subprotocols"] else None)

        async def on_receive(self, websocket, data):
            await websocket.send_text(f"starlette {websocket.state.greeting}: {data}")

        async def on_disconnect(self, websocket, close_code):
            mark("starlette-ws-closed", str(close_code))

    return Starlette(routes=[Route("/", home), Route("/stream", stream), Route("/upload", upload, methods=["POST"]),
                             Route("/disconnect", disconnect), WebSocketRoute("/ws", Echo)], lifespan=lifespan)


def fastapi_app():
    from fastapi import BackgroundTasks, FastAPI, WebSocket, WebSocketDisconnect
    from fastapi.responses import StreamingResponse

    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int, q: str | None = None):
        return {"item_id": item_id, "q": q}

    @app.get("/stream")
    async def stream():
        async def gen():
            for i in range(5):
                yield b"part %d\n" % i
                await asyncio.sleep(0.1)
        return StreamingResponse(gen(), media_type="text/plain")

    async def later(name: str):
        await asyncio.sleep(0.3)
        mark("fastapi-background", name)

    @app.post("/bg")
    async def bg(background_tasks: BackgroundTasks):
        background_tasks.add_task(later, "done")
        return {"queued": True}

    @app.websocket("/ws/{room}")
    async def ws(websocket: WebSocket, room: str):
        await websocket.accept()
        try:
            while True:
                data = await websocket.receive_json()
                await websocket.send_json({"room": room, "got": data})
        except WebSocketDisconnect as e:
            mark("fastapi-ws-closed", str(e.code))

    return app


def django_app():
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(DEBUG=False, SECRET_KEY="test", ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__,
                           MIDDLEWARE=[], INSTALLED_APPS=[], USE_TZ=True)
        django.setup()
    from django.core.asgi import get_asgi_application
    return get_asgi_application()


# Django's URLconf (ROOT_URLCONF is this module)
def _django_urls():
    from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
    from django.urls import path

    def hello(request):
        return HttpResponse(f"django {request.path} {request.GET.get('x', '')}", content_type="text/plain")

    async def ahello(request):
        await asyncio.sleep(0.01)
        return JsonResponse({"method": request.method, "len": len(request.body)})

    async def stream(request):
        async def gen():
            for i in range(4):
                yield f"dj {i}\n"
                await asyncio.sleep(0.05)
        return StreamingHttpResponse(gen(), content_type="text/plain")

    return [path("hello", hello), path("ahello", ahello), path("stream", stream)]


def __getattr__(name):
    if name == "urlpatterns":
        return _django_urls()
    if name == "starlette":
        return starlette_app()
    if name == "fastapi":
        return fastapi_app()
    if name == "django":
        return django_app()
    raise AttributeError(name)
