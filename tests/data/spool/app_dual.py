"""The Python half of the two-runtime spooler test: its uwsgi.spooler runs the tasks of kind
"py" and answers SPOOL_IGNORE to the others (then the Lua plugin's uwsgi.spooler gets them).
GET /spool?kind=K&id=I spools from Python."""

import os
from urllib.parse import parse_qsl

import uwsgi

RECORDS = os.environ["SPOOL_RECORDS"]


def spooler(args):
    if args.get(b"kind") != b"py":
        return uwsgi.SPOOL_IGNORE
    with open(RECORDS, "a") as f:
        f.write(f"py:{args[b'id'].decode()}:{os.getpid()}\n")
    return uwsgi.SPOOL_OK


uwsgi.spooler = spooler


def application(environ, start_response):
    qs = dict(parse_qsl(environ["QUERY_STRING"]))
    path = uwsgi.spool({k.encode(): v.encode() for k, v in qs.items()})
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [path]
