"""10 ms of I/O per request (Granian's benchmark shape): the app waits 10 ms on a gevent-patched
time.sleep, then answers. The servers run it with gevent's monkey-patching (--gevent-monkey-patch,
gunicorn's gevent worker patches by itself), so the wait holds a greenlet, not the worker."""

import time

BODY = b"slept 10ms\n"


def application(environ, start_response):
    time.sleep(0.010)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))])
    return [BODY]
