"""The WSGI hello world (uWSGI's quickstart).

    ./uwsgi --http-socket :8080 --wsgi-file examples/hello.py
"""


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/html")])
    return [b"Hello World"]
