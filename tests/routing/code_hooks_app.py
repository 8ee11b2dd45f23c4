"""The WSGI app behind the code hooks: shows what the hooks left it (ctx, vars)."""


def application(environ, start_response):
    ctx = environ.get("uwsgi.ctx")
    if environ.get("PATH_INFO") == "/set-ctx":
        ctx["from_app"] = "app-value"       # a log hook reads it after the response
    body = (f"ctx={sorted((ctx or {}).items())}\nHOOK_SEEN={environ.get('HOOK_SEEN', '')}\n"
            f"MD5={environ.get('MD5', '')}\nruntime=python\n")
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Powered-By", "py")])
    return [body.encode()]
