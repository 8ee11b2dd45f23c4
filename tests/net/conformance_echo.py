"""The HTTP conformance corpus's Python (WSGI) echo app: answers 200 with what the app saw, one
`KEY=HEX` line per CGI var of the environ (its latin-1 bytes in hex), sorted, then `body=HEX`
(tests/net/test_http_conformance.py; the Lua twin is conformance_echo.lua, same output)."""


def application(environ, start_response):
    lines = [f"{k}={v.encode('latin-1').hex()}" for k, v in sorted(environ.items())
             if isinstance(v, str) and k == k.upper()]   # the CGI vars, not wsgi.* / uwsgi.*
    lines.append("body=" + environ["wsgi.input"].read().hex())
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("\n".join(lines) + "\n").encode()]
