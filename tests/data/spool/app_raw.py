"""A plain uwsgi.spooler (no uwsgidecorators): each task's args are appended to
$SPOOL_RECORDS as one JSON line (bytes as latin-1 text), then SPOOL_OK. Real uWSGI loads it
too (test_spooler_interop.py)."""

import json
import os

import uwsgi

RECORDS = os.environ["SPOOL_RECORDS"]


def _text(value):
    return value.decode("latin-1") if isinstance(value, bytes) else value


def spooler(args):
    line = {_text(k): _text(v) for k, v in args.items()}
    line["pid"] = os.getpid()
    line["cwd"] = os.getcwd()
    with open(RECORDS, "a") as f:
        f.write(json.dumps(line) + "\n")
    return uwsgi.SPOOL_OK


uwsgi.spooler = spooler


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"raw"]
