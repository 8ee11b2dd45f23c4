"""WebSocket echo on uWSGI's API, the same file for both servers (bench scenario ws-echo).

/ws: one thread (or sync worker) per session, blocking uwsgi.websocket_recv().
/ws-async: uWSGI's async pattern for --async N: never wait in place; wait on the connection
and yield, so the other cores run meanwhile (under uWSGI's ugreen the blocking form suspends too).
Any other path answers a plain 200 (the harness's readiness and preflight GET).
"""

import uwsgi


def session_blocking():
    try:
        while True:
            uwsgi.websocket_send(uwsgi.websocket_recv())
    except OSError:
        pass            # the client closed: the session ends quietly


def session_async():
    fd = uwsgi.connection_fd()      # once, as uWSGI's own async examples do
    while True:
        try:
            msg = uwsgi.websocket_recv_nb()
            if msg:
                uwsgi.websocket_send(msg)
                continue
        except OSError:
            return      # the client closed
        yield uwsgi.wait_fd_read(fd, 30)


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path in ("/ws", "/ws-async"):
        uwsgi.websocket_handshake(environ["HTTP_SEC_WEBSOCKET_KEY"], environ.get("HTTP_ORIGIN", ""))
        if path == "/ws":
            session_blocking()
            return []
        return session_async()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"websocket echo"]
