"""The WSGI app of the routing tests: answers the request vars the routes may have changed."""


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path.startswith("/status/"):
        code = path.rsplit("/", 1)[1]
        start_response(f"{code} X", [("Content-Type", "text/plain"), ("X-App", "1")])
        return [b"app says " + code.encode()]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([b"part1-", b"part2"])
    keys = ("PATH_INFO", "QUERY_STRING", "REMOTE_USER", "ROUTED", "SCRIPT_NAME", "REQUEST_METHOD",
            "UWSGI_SCHEME", "COUNT", "CACHED")
    body = "\n".join(f"{k}={environ.get(k, '')}" for k in keys) + "\nruntime=python\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Powered-By", "py"),
                              ("X-App", "1")])
    return [body.encode()]
