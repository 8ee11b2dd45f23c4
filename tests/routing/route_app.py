"""The WSGI app of the routing tests: answers the request vars the routes may have changed."""


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path.startswith("/status/"):
        code = path.rsplit("/", 1)[1]
        start_response(f"{code} X", [("Content-Type", "text/plain"), ("X-App", "1")])
        return [b"app says " + code.encode()]
    if path == "/app":      # for --collect-header / --pull-header
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Tag", "abc"), ("X-Pull", "zz"),
                                  ("X-App", "1")])
        return [b"app"]
    if path == "/cwd":      # for chdir
        import os
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [os.getcwd().encode()]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([b"part1-", b"part2"])
    keys = ("PATH_INFO", "QUERY_STRING", "REMOTE_USER", "ROUTED", "SCRIPT_NAME", "REQUEST_METHOD",
            "UWSGI_SCHEME", "COUNT", "CACHED")
    keys += tuple(k for k in environ.get("HTTP_X_SHOW", "").split(",") if k)    # what a test asks to see
    body = "\n".join(f"{k}={environ.get(k, '')}" for k in keys) + "\nruntime=python\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Powered-By", "py"),
                              ("X-App", "1")])
    return [body.encode()]
