"""A streamed body of 10001 tiny chunks (the Python twin of pippo_cpu.lua), to measure how a
server steps an iterator: ./uwsgi --http-socket :8080 --wsgi-file examples/stream.py"""


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/html")])
    return body(environ)


def body(environ):
    yield b"<html><body>"
    yield b"<p>Hello WSGI!</p>"
    yield b"<p>PATH_INFO: " + environ.get("PATH_INFO", "").encode("latin-1") + b"</p>"
    yield b"<p>SCRIPT_NAME: " + environ.get("SCRIPT_NAME", "").encode("latin-1") + b"</p>"
    for i in range(10001):
        yield b"%d<br/>" % i
    yield b"</body></html>"
