"""Source of the WSGI apps the cffi integration tests serve (written to a temp dir per test)."""

FLASK_APP = r'''
import hashlib
from flask import Flask, request, redirect, url_for

app = Flask(__name__)

@app.route("/")
def index():
    return "flask index script_name=%s" % request.environ["SCRIPT_NAME"]

@app.route("/form", methods=["POST"])
def form():
    return "hello %s n=%s" % (request.form["name"], request.form.get("n"))

@app.route("/upload", methods=["POST"])
def upload():
    f = request.files["file"]
    data = f.read()
    return "%s %d %s" % (f.filename, len(data), hashlib.md5(data).hexdigest())

@app.route("/go")
def go():
    return redirect(url_for("index"))

@app.route("/file")
def file():
    from flask import send_file
    return send_file(__file__, mimetype="text/plain")

@app.route("/stream")
def stream():
    return app.response_class((b"%d," % i for i in range(3000)), mimetype="text/plain")

application = app
'''

DJANGO_APP = r'''
import hashlib
from django.conf import settings

settings.configure(DEBUG=False, SECRET_KEY="test-only", ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"],
                   MIDDLEWARE=[], INSTALLED_APPS=[], USE_TZ=True)

from django.http import HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.views.decorators.csrf import csrf_exempt

def index(request):
    return HttpResponse("django index")

@csrf_exempt
def form(request):
    return HttpResponse("hello %s n=%s" % (request.POST["name"], request.POST.get("n")))

@csrf_exempt
def upload(request):
    f = request.FILES["file"]
    data = f.read()
    return HttpResponse("%s %d %s" % (f.name, len(data), hashlib.md5(data).hexdigest()))

def go(request):
    return HttpResponseRedirect(reverse("index"))

def file(request):
    from django.http import FileResponse
    return FileResponse(open(__file__, "rb"), content_type="text/plain")

def stream(request):
    from django.http import StreamingHttpResponse
    return StreamingHttpResponse((b"%d," % i for i in range(3000)), content_type="text/plain")

urlpatterns = [path("", index, name="index"), path("form", form), path("upload", upload), path("go", go),
               path("file", file), path("stream", stream)]

from django.core.wsgi import get_wsgi_application
application = get_wsgi_application()
'''

# Everything the plugin can be asked over HTTP: environ echo, errors, streaming, async, threads.
PROBE_APP = r'''
import json, os, sys, threading, time
import uwsgi

def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/env":
        start_response("200 OK", [("Content-Type", "application/json")])
        out = {k: v for k, v in environ.items() if isinstance(v, (str, int, bool, tuple))}
        out["input"] = environ["wsgi.input"].read().decode("latin-1")
        out["worker_id"] = uwsgi.worker_id()
        out["numproc"] = uwsgi.numproc
        out["masterpid"] = uwsgi.masterpid()
        out["opt_keys"] = sorted(uwsgi.opt)
        out["thread"] = threading.get_ident()
        return [json.dumps(out).encode()]
    if path == "/fail":
        raise RuntimeError("probe failure before the response")
    if path == "/fail-late":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return late_failure()
    if path == "/bad-header":
        start_response("200 OK", [("X-Bad", "a\r\nb")])
        return [b"never"]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (b"%d\n" % i for i in range(10001))
    if path == "/sleep":
        # async: arm a wait and give up the turn; other requests run meanwhile
        start_response("200 OK", [("Content-Type", "text/plain")])
        return async_sleeper(float(environ.get("QUERY_STRING") or 1))
    if path == "/waitfd":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return fd_waiter()
    if path == "/block":
        time.sleep(float(environ.get("QUERY_STRING") or 1))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"multithread=%r" % environ["wsgi.multithread"]]
    if path == "/file":
        f = open(__file__, "rb")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return environ["wsgi.file_wrapper"](f)
    if path == "/logvar":
        uwsgi.set_logvar("probe", "logged-value")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [uwsgi.get_logvar("probe")]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]

def late_failure():
    yield b"x" * 100000
    raise RuntimeError("probe failure after the headers")

def fd_waiter():
    import socket
    a, b = socket.socketpair()
    threading.Timer(0.5, b.send, (b"ping",)).start()
    try:
        uwsgi.wait_fd_read(a.fileno(), 10)
        yield b""
        ready = uwsgi.ready_fd()
        yield b"ready=%d data=%s" % (ready == a.fileno(), a.recv(10))
    finally:
        a.close()
        b.close()

def async_sleeper(secs):
    yield b"start "
    uwsgi.async_sleep(secs)
    yield b""
    yield b"core=%d done" % uwsgi.async_id()
'''

DECORATORS_APP = r'''
import os, time
import uwsgi
from uwsgidecorators import postfork, rpc, timer, lock, signal

OUT = os.environ["PROBE_DIR"]

@postfork
def after_fork():
    with open(os.path.join(OUT, "postfork-%d" % uwsgi.worker_id()), "w") as f:
        f.write(str(os.getpid()))

@rpc("hello")
def hello(name):
    return b"hello " + name

@timer(1)
def tick(signum):
    with open(os.path.join(OUT, "ticks"), "a") as f:
        f.write("%d\n" % signum)

@lock
def locked_incr():
    return b"locked"

@signal(17)
def on_signal(signum):
    with open(os.path.join(OUT, "signal-%d" % signum), "a") as f:
        f.write("%d\n" % uwsgi.worker_id())

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    if environ["PATH_INFO"] == "/signal":
        uwsgi.signal(17)
        return [b"raised"]
    return [uwsgi.call("hello", b"world"), b" ", locked_incr()]
'''

BAD_IMPORT_APP = "import no_such_module_for_uwsgid_tests\n"

# wsgiref's validator around an app, its warnings turned into errors (-> a 500): a request
# answered 200 went through a PEP 3333-clean environ, input, start_response and body.
VALIDATED_APP = r'''
import warnings, wsgiref.validate
warnings.simplefilter("error", wsgiref.validate.WSGIWarning)

def inner(environ, start_response):
    n = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(n) if n else b""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return iter([b"validated ", environ["REQUEST_METHOD"].encode(), b" ", body])

application = wsgiref.validate.validator(inner)
'''
