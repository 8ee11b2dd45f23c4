"""A paced producer (bench scenario chunk-delay): CHUNKS small chunks, one every PAUSE seconds
(2 s in all), each carrying the wall-clock time of its yield, `N@SECONDS;`, then `end;`.

The client (bench/harness/chunkload.py) timestamps each chunk's arrival and subtracts the stamp:
the delay the server added between the app's yield and the bytes on the wire. Same file on both
sides; the GET on / answers at once (readiness and preflight).
"""

import time

CHUNKS = 40
PAUSE = 0.05


def stream():
    for i in range(CHUNKS):
        yield b"%d@%.6f;" % (i, time.time())
        time.sleep(PAUSE)
    yield b"end;"


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    if environ["PATH_INFO"] == "/stream":
        return stream()
    return [b"paced stream"]
