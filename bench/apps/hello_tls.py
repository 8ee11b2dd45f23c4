"""examples/hello.py with an explicit Content-Length (bench scenarios https-*).

Real uWSGI 2.0's --https-socket adds no Content-Length and ends every response by closing the
connection; wrk over TLS cannot frame a response by the close (it counts a read error and no
request), so the app says its length itself. Same file on both sides.
"""

BODY = b"Hello World"


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(BODY)))])
    return [BODY]
