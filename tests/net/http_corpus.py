"""Our HTTP/1.1 conformance corpus, from RFC 9112 (HTTP/1.1) and RFC 9110 (HTTP semantics), as
data: each case is the raw bytes a client sends, the section it comes from, and what must
happen: the status of the response and, for a request that reaches the application, what the
application sees (the CGI vars: method, path, query, headers as HTTP_*, and the body); for a
refusal, the reason written in the log line (`STATUS PEER REASON`, docs/ERRORS.md). Where the
RFCs leave the server a choice, `choice` says which one we made and why.

tests/net/test_http_conformance.py runs every case in-process (whole, byte by byte and cut at
random, and behind a pipelined request) and against real servers: --http-socket and the --http
router, each in front of a Python (WSGI) and a Lua (WSAPI) echo app
(conformance_echo.py / .lua). Targets: no valid request refused, no invalid one accepted.

Conventions: `env` lists CGI vars that must have exactly these values; `headers` is the whole set
of HTTP_* vars the app must see (None: not checked); `more` lists the responses that follow on
the same connection, as (status, env, headers, body); status 0 = no response (the server closes).
Through the router a chunked body arrives with its CONTENT_LENGTH and no HTTP_TRANSFER_ENCODING
(the router reads it whole); the tests account for that.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes
    rfc: str
    status: int
    env: dict | None = None
    headers: dict | None = None
    body: bytes = b""
    log: str = ""
    choice: str = ""
    more: tuple = ()
    interim: bool = False      # a "100 Continue" comes before the response
    closes: bool = False       # the response says Connection: close


H = {"HTTP_HOST": b"example.com"}


def req(line: bytes, *fields: bytes, body: bytes = b"") -> bytes:
    """A request: the request line, the field lines, the empty line, the body (CRLF endings)."""
    return line + b"\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n" + body


def get(target: bytes = b"/", *fields: bytes) -> bytes:
    return req(b"GET " + target + b" HTTP/1.1", b"Host: example.com", *fields)


def chunked(*fields: bytes, body: bytes) -> bytes:
    """A POST with Transfer-Encoding: chunked and the given (already chunked) body."""
    return req(b"POST /c HTTP/1.1", b"Host: example.com", b"Transfer-Encoding: chunked", *fields, body=body)


def ok(name, raw, rfc, env=None, headers=H, body=b"", choice="", more=(), interim=False, closes=False):
    return Case(name, raw, rfc, 200, env or {}, headers, body, "", choice, more, interim, closes)


def no(name, raw, rfc, status, log, choice=""):
    return Case(name, raw, rfc, status, None, None, b"", log, choice)


TE = {"HTTP_HOST": b"example.com", "HTTP_TRANSFER_ENCODING": b"chunked"}
HELLO = b"5\r\nhello\r\n0\r\n\r\n"
NOT_HEX = "chunk size line is not hex"
BAD_EXT = "invalid chunk size or chunk extension"
NO_CRLF_CHUNK = "chunk size line does not end with CRLF"
BAD_TOKEN = "invalid header field name (a character outside token, or whitespace before the colon)"
OBS_FOLD = "whitespace at the start of a header line (obs-fold)"
CTL_VALUE = "control character in a header value"
LINE_END = "header line does not end with CRLF"
NOT_TOKEN = "method is not a token"
BAD_TARGET = "request target is not /path, an http(s) URL or *"
BAD_CHAR_TARGET = "invalid character in the request target"
BAD_URL = "invalid request target (not /path, an http(s) URL or *, or a character not allowed in it)"
BAD_VERSION = "invalid HTTP version in the request line"
CL_TE = "both Content-Length and Transfer-Encoding"
CL_NAN = "Content-Length is not a decimal number"
TE_LAST = "Transfer-Encoding does not end with chunked"
TE_BAD = "invalid Transfer-Encoding (chunked more than once)"
BAD_HOST = "invalid Host header"
NO_HOST = "HTTP/1.1 request without a Host header"
CONNECT = "CONNECT (a tunnel) is not supported by an application server"
CHOICE_LF = ("RFC 9112 2.2 lets a recipient accept a bare LF as a line end (MAY); we refuse it, as "
             "llhttp does: a proxy in front that reads lines differently is how requests get smuggled "
             "(RFC 9112 11.2).")
CHOICE_CL_LIST = ("RFC 9110 8.6 lets a recipient either reject a repeated identical Content-Length or use "
                  "the single value (MAY); we reject it (llhttp, nginx): framing fields are where smuggling "
                  "starts (RFC 9112 11.2).")
CHOICE_TARGET_ASCII = ("Characters RFC 3986 does not allow in a URI but that cannot end the request line "
                       "or change the framing (| { } ^ ` \" < > \\) are accepted, as llhttp and nginx do: "
                       "clients send them unencoded.")


CORPUS: list[Case] = [
    # ---- RFC 9112 2.2: message parsing, line endings ------------------------------------
    ok("plain-get", get(), "RFC 9112 3", env={"REQUEST_METHOD": b"GET", "PATH_INFO": b"/", "QUERY_STRING": b"",
                                             "REQUEST_URI": b"/", "SERVER_PROTOCOL": b"HTTP/1.1"}),
    ok("empty-line-before-request", b"\r\n" + get(b"/e"), "RFC 9112 2.2", env={"PATH_INFO": b"/e"}),
    ok("two-empty-lines-before-request", b"\r\n\r\n" + get(b"/e2"), "RFC 9112 2.2", env={"PATH_INFO": b"/e2"},
       choice="A server SHOULD ignore at least one empty line before a request line; llhttp ignores any number."),
    ok("bare-lf-line-before-request", b"\n" + get(b"/e3"), "RFC 9112 2.2", env={"PATH_INFO": b"/e3"},
       choice="An empty line made of a bare LF before the request line is skipped like CRLF (llhttp): it "
              "cannot be mistaken for part of a request."),
    no("bare-lf-after-request-line", b"GET / HTTP/1.1\nHost: example.com\r\n\r\n", "RFC 9112 2.2", 400,
       "request line does not end with CRLF after the version", CHOICE_LF),
    no("bare-lf-after-field", b"GET / HTTP/1.1\r\nHost: example.com\nX: y\r\n\r\n", "RFC 9112 2.2", 400,
       LINE_END, CHOICE_LF),
    no("bare-lf-everywhere", b"GET / HTTP/1.1\nHost: example.com\n\n", "RFC 9112 2.2", 400,
       "request line does not end with CRLF after the version", CHOICE_LF),
    no("bare-lf-ending-head", b"GET / HTTP/1.1\r\nHost: example.com\r\n\n", "RFC 9112 2.2", 400,
       BAD_TOKEN, CHOICE_LF),
    no("bare-cr-in-value", get(b"/", b"X: a\rb"), "RFC 9112 2.2", 400, LINE_END,
       "A bare CR must make the element invalid or become SP: we refuse the request."),
    no("bare-cr-ending-head", b"GET / HTTP/1.1\r\nHost: example.com\r\n\rX", "RFC 9112 2.2", 400,
       "header section does not end with CRLF"),
    no("odd-method-bare-lf", b"-ODD / HTTP/1.1\nHost: example.com\r\n\r\n", "RFC 9112 2.2", 400,
       "request line does not end with CRLF", CHOICE_LF),
    no("bare-cr-line-end", b"GET / HTTP/1.1\r\nHost: example.com\r\r\n\r\n", "RFC 9112 2.2", 400, LINE_END),
    no("whitespace-before-first-field", b"GET / HTTP/1.1\r\n Host: example.com\r\n\r\n", "RFC 9112 2.2", 400,
       OBS_FOLD, "Whitespace between the start line and the first field: reject, or drop those lines (MUST "
                 "either); we reject."),
    no("nul-in-request-line", b"GET /\x00 HTTP/1.1\r\nHost: example.com\r\n\r\n", "RFC 9112 2.2", 400,
       BAD_CHAR_TARGET),
    no("garbage", b"GARBAGE\r\n\r\n", "RFC 9112 3", 400, "request line is not METHOD SP TARGET SP HTTP-VERSION"),
    no("binary-garbage", b"\x00\x01\x02\r\n\r\n", "RFC 9112 3", 400,
       "request line is not METHOD SP TARGET SP HTTP-VERSION"),

    # ---- RFC 9112 2.3 / RFC 9110 6.2: the version ----------------------------------------
    ok("http10-no-host", req(b"GET /v HTTP/1.0"), "RFC 9112 2.3", headers={},
       env={"SERVER_PROTOCOL": b"HTTP/1.0", "PATH_INFO": b"/v"}),
    ok("http10-with-host", req(b"GET /v HTTP/1.0", b"Host: example.com"), "RFC 9112 2.3",
       env={"SERVER_PROTOCOL": b"HTTP/1.0"}),
    ok("http12-read-as-11", req(b"GET /v HTTP/1.2", b"Host: example.com"), "RFC 9110 6.2",
       env={"SERVER_PROTOCOL": b"HTTP/1.2", "PATH_INFO": b"/v"},
       choice="A higher minor version is processed as HTTP/1.1 (SHOULD); SERVER_PROTOCOL keeps the version "
              "the client sent, as CGI defines it."),
    ok("http19-read-as-11", req(b"GET /v HTTP/1.9", b"Host: example.com"), "RFC 9110 6.2",
       env={"SERVER_PROTOCOL": b"HTTP/1.9"}),
    no("http2-request-line", req(b"GET / HTTP/2.0", b"Host: example.com"), "RFC 9110 6.2", 505,
       "unsupported HTTP version 2.0"),
    no("http3-request-line", req(b"GET / HTTP/3.0", b"Host: example.com"), "RFC 9110 6.2", 505,
       "unsupported HTTP version 3.0"),
    no("http09-no-version", b"GET /\r\n\r\n", "RFC 9112 3", 400, "no HTTP version in the request line (HTTP/0.9)",
       "HTTP/0.9 (no version) is not served."),
    no("version-two-digit-minor", req(b"GET / HTTP/1.10", b"Host: example.com"), "RFC 9112 2.3", 400,
       "request line does not end with CRLF after the version"),
    no("version-lowercase", req(b"GET / http/1.1", b"Host: example.com"), "RFC 9112 2.3", 400, BAD_VERSION),
    no("version-no-minor", req(b"GET / HTTP/1", b"Host: example.com"), "RFC 9112 2.3", 400, BAD_VERSION),
    no("version-leading-zero", req(b"GET / HTTP/01.1", b"Host: example.com"), "RFC 9112 2.3", 400, BAD_VERSION),
    no("version-trailing-space", req(b"GET / HTTP/1.1 ", b"Host: example.com"), "RFC 9112 3", 400,
       "request line does not end with CRLF after the version"),
    no("h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "RFC 9113 3.3", 400,
       "HTTP/2 connection preface on an HTTP/1.1 socket"),

    # ---- RFC 9112 3 / 3.1, RFC 9110 9.1: the request line and the method -------------------
    ok("head", req(b"HEAD /h HTTP/1.1", b"Host: example.com"), "RFC 9110 9.3.2", env={"REQUEST_METHOD": b"HEAD"}),
    ok("post-content-length", req(b"POST /p HTTP/1.1", b"Host: example.com", b"Content-Length: 5", body=b"hello"),
       "RFC 9112 6.2", env={"REQUEST_METHOD": b"POST", "CONTENT_LENGTH": b"5"}, body=b"hello"),
    ok("put", req(b"PUT /p HTTP/1.1", b"Host: example.com", b"Content-Length: 3", body=b"abc"), "RFC 9110 9.3.4",
       env={"REQUEST_METHOD": b"PUT"}, body=b"abc"),
    ok("delete", req(b"DELETE /d HTTP/1.1", b"Host: example.com"), "RFC 9110 9.3.5", env={"REQUEST_METHOD": b"DELETE"}),
    ok("options-path", req(b"OPTIONS /o HTTP/1.1", b"Host: example.com"), "RFC 9110 9.3.7",
       env={"REQUEST_METHOD": b"OPTIONS", "PATH_INFO": b"/o"}),
    ok("trace", req(b"TRACE /t HTTP/1.1", b"Host: example.com"), "RFC 9110 9.3.8", env={"REQUEST_METHOD": b"TRACE"}),
    ok("patch", req(b"PATCH /p HTTP/1.1", b"Host: example.com", b"Content-Length: 2", body=b"{}"), "RFC 5789",
       env={"REQUEST_METHOD": b"PATCH"}, body=b"{}"),
    ok("webdav-propfind", req(b"PROPFIND /dav HTTP/1.1", b"Host: example.com"), "RFC 4918 9.1",
       env={"REQUEST_METHOD": b"PROPFIND"}),
    ok("method-unknown-token", req(b"BREW /pot HTTP/1.1", b"Host: example.com"), "RFC 9110 9.1",
       env={"REQUEST_METHOD": b"BREW", "PATH_INFO": b"/pot"},
       choice="A method the server does not know is passed to the app (it may answer 501 or 405)."),
    ok("method-leading-dash", req(b"-BLARGH /x HTTP/1.1", b"Host: example.com"), "RFC 9110 9.1",
       env={"REQUEST_METHOD": b"-BLARGH"}),
    ok("method-lowercase", req(b"get /x HTTP/1.1", b"Host: example.com"), "RFC 9110 9.1",
       env={"REQUEST_METHOD": b"get"}, choice="Methods are case-sensitive: \"get\" is not GET; the app sees it as sent."),
    ok("method-all-tchars", req(b"!#$%&'*+-.^_`|~09AZaz /x HTTP/1.1", b"Host: example.com"), "RFC 9110 5.6.2",
       env={"REQUEST_METHOD": b"!#$%&'*+-.^_`|~09AZaz"}),
    ok("method-digits", req(b"1234 /x HTTP/1.1", b"Host: example.com"), "RFC 9110 5.6.2",
       env={"REQUEST_METHOD": b"1234"}),
    ok("method-rtsp-name", req(b"DESCRIBE /x HTTP/1.1", b"Host: example.com"), "RFC 9110 9.1",
       env={"REQUEST_METHOD": b"DESCRIBE"}),
    ok("method-long", req(b"X" * 200 + b" /x HTTP/1.1", b"Host: example.com"), "RFC 9110 9.1",
       env={"REQUEST_METHOD": b"X" * 200}),
    ok("unknown-method-with-body", req(b"FROB /f HTTP/1.1", b"Host: example.com", b"Content-Length: 4", body=b"data"),
       "RFC 9110 9.1", env={"REQUEST_METHOD": b"FROB", "CONTENT_LENGTH": b"4"}, body=b"data"),
    no("method-at-sign", req(b"G@T / HTTP/1.1", b"Host: example.com"), "RFC 9110 9.1", 400, NOT_TOKEN),
    no("method-slash", req(b"GE/T / HTTP/1.1", b"Host: example.com"), "RFC 9110 9.1", 400, NOT_TOKEN),
    no("method-paren", req(b"GET() / HTTP/1.1", b"Host: example.com"), "RFC 9110 9.1", 400, NOT_TOKEN),
    no("method-non-ascii", req(b"G\xc9T / HTTP/1.1", b"Host: example.com"), "RFC 9110 9.1", 400, NOT_TOKEN),
    ok("several-spaces-between-words", req(b"GET  /sp  HTTP/1.1", b"Host: example.com"), "RFC 9112 3",
       env={"PATH_INFO": b"/sp"},
       choice="Runs of SP between the words are accepted (MAY parse on whitespace boundaries), as llhttp does; "
              "other whitespace is not."),
    no("tab-after-method", req(b"GET\t/ HTTP/1.1", b"Host: example.com"), "RFC 9112 3", 400,
       "request line is not METHOD SP TARGET SP HTTP-VERSION",
       "HTAB, VT, FF or CR as a separator: refused (the MAY of RFC 9112 3 is not taken for them)."),
    no("space-before-method", req(b" GET / HTTP/1.1", b"Host: example.com"), "RFC 9112 3", 400,
       "whitespace at the start or end of the request line"),
    no("no-target", req(b"GET HTTP/1.1", b"Host: example.com"), "RFC 9112 3", 400, BAD_TARGET),
    no("space-in-target", req(b"GET /a b HTTP/1.1", b"Host: example.com"), "RFC 9112 3", 400, BAD_VERSION),
    no("request-line-too-long", req(b"GET /" + b"a" * 5000 + b" HTTP/1.1", b"Host: example.com"), "RFC 9112 3",
       414, "request target over --buffer-size 4096"),

    # ---- RFC 9112 3.2: the request target ------------------------------------------------
    ok("query", get(b"/p?a=1&b=2"), "RFC 9112 3.2.1", env={"PATH_INFO": b"/p", "QUERY_STRING": b"a=1&b=2",
                                                            "REQUEST_URI": b"/p?a=1&b=2"}),
    ok("query-with-question-mark", get(b"/p?a=b?c"), "RFC 3986 3.4", env={"QUERY_STRING": b"a=b?c"}),
    ok("empty-query", get(b"/p?"), "RFC 3986 3.4", env={"PATH_INFO": b"/p", "QUERY_STRING": b""}),
    ok("double-slash-path", get(b"//x//y"), "RFC 3986 3.3", env={"PATH_INFO": b"//x//y"}),
    ok("percent-decoded-path", get(b"/a%20b/%41"), "RFC 3875 4.1.5", env={"PATH_INFO": b"/a b/A",
                                                                         "REQUEST_URI": b"/a%20b/%41"}),
    ok("percent-2f-decoded", get(b"/a%2Fb"), "RFC 3875 4.1.5", env={"PATH_INFO": b"/a/b", "REQUEST_URI": b"/a%2Fb"},
       choice="PATH_INFO is decoded (CGI), so %2F becomes /; REQUEST_URI keeps the request target as sent."),
    ok("bad-percent-escape-kept", get(b"/%zz%4"), "RFC 3986 2.1", env={"PATH_INFO": b"/%zz%4"},
       choice="A % not followed by two hex digits stays as it is (urllib's unquote), not an error."),
    ok("percent-00", get(b"/a%00b"), "RFC 3875 4.1.5", env={"PATH_INFO": b"/a\x00b"},
       choice="%00 decodes to NUL in PATH_INFO, as PEP 3333 servers (gunicorn, wsgiref) do; the app decides."),
    ok("query-not-decoded", get(b"/q?x=%41+b"), "RFC 3875 4.1.7", env={"QUERY_STRING": b"x=%41+b"}),
    ok("raw-latin1-byte-in-path", get(b"/caf\xe9"), "RFC 9112 3.2", env={"PATH_INFO": b"/caf\xe9",
                                                                         "REQUEST_URI": b"/caf\xe9"},
       choice="A raw byte over 0x7F in the target (not valid in a URI) is passed through as latin-1, as nginx and "
              "gunicorn do: refusing it breaks clients that send UTF-8 paths, and it cannot change the framing."),
    ok("raw-utf8-in-path", get(b"/caf\xc3\xa9"), "RFC 9112 3.2", env={"PATH_INFO": b"/caf\xc3\xa9"}),
    ok("raw-bytes-in-query", get(b"/q?n=\xe9\xff"), "RFC 9112 3.2", env={"QUERY_STRING": b"n=\xe9\xff"}),
    ok("sub-delims-in-path", get(b"/a:b@c!$&'()*+,;="), "RFC 3986 3.3", env={"PATH_INFO": b"/a:b@c!$&'()*+,;="}),
    ok("unreserved-in-path", get(b"/~user/a-b_c.d"), "RFC 3986 2.3", env={"PATH_INFO": b"/~user/a-b_c.d"}),
    ok("brackets-in-query", get(b"/q?a[]=1&b[x]=2"), "RFC 3986 3.4", env={"QUERY_STRING": b"a[]=1&b[x]=2"}),
    ok("pipe-braces-in-target", get(b"/a|b{c}?q=^`"), "RFC 3986 2", env={"PATH_INFO": b"/a|b{c}",
                                                                          "QUERY_STRING": b"q=^`"},
       choice=CHOICE_TARGET_ASCII),
    ok("quote-angle-backslash-in-target", get(b'/a"<b>\\c'), "RFC 3986 2", env={"PATH_INFO": b'/a"<b>\\c'},
       choice=CHOICE_TARGET_ASCII),
    ok("fragment-dropped", get(b"/f?x=1#frag"), "RFC 9110 4.2.5", env={"PATH_INFO": b"/f", "QUERY_STRING": b"x=1",
                                                                       "REQUEST_URI": b"/f?x=1#frag"},
       choice="A fragment is not part of a request target (a client must not send it); rather than refuse it, "
              "it is left out of PATH_INFO and QUERY_STRING (gunicorn does the same); REQUEST_URI is as sent."),
    ok("absolute-form", req(b"GET http://other.example/p?q=1 HTTP/1.1", b"Host: example.com"), "RFC 9112 3.2.2",
       env={"PATH_INFO": b"/p", "QUERY_STRING": b"q=1", "REQUEST_URI": b"http://other.example/p?q=1"},
       headers={"HTTP_HOST": b"other.example"}),
    ok("absolute-form-https-port", req(b"GET https://example.com:8443/s HTTP/1.1", b"Host: example.com:8443"),
       "RFC 9112 3.2.2", env={"PATH_INFO": b"/s"}, headers={"HTTP_HOST": b"example.com:8443"}),
    ok("absolute-form-no-path", req(b"GET http://example.com HTTP/1.1", b"Host: example.com"), "RFC 9112 3.2.2",
       env={"PATH_INFO": b"/"}),
    ok("absolute-form-no-path-query", req(b"GET http://example.com?x=1 HTTP/1.1", b"Host: example.com"),
       "RFC 9112 3.2.2", env={"PATH_INFO": b"/", "QUERY_STRING": b"x=1"}),
    ok("absolute-form-upper-scheme", req(b"GET HTTP://Example.COM/U HTTP/1.1", b"Host: example.com"),
       "RFC 9110 4.2.3", env={"PATH_INFO": b"/U"}, headers={"HTTP_HOST": b"Example.COM"}),
    ok("absolute-form-ipv6", req(b"GET http://[::1]:8080/6 HTTP/1.1", b"Host: [::1]:8080"), "RFC 9112 3.2.2",
       env={"PATH_INFO": b"/6"}, headers={"HTTP_HOST": b"[::1]:8080"}),
    no("absolute-form-userinfo", req(b"GET http://user:pw@example.com/ HTTP/1.1", b"Host: example.com"),
       "RFC 9110 4.2.4", 400, "userinfo (user@) in the request target"),
    no("absolute-form-empty-authority", req(b"GET http:///x HTTP/1.1", b"Host: example.com"), "RFC 9112 3.2.2", 400,
       "invalid authority in the request target"),
    no("absolute-form-bad-authority-char", req(b"GET http://a^b/ HTTP/1.1", b"Host: example.com"), "RFC 9112 3.2.2",
       400, "invalid authority in the request target"),
    no("absolute-form-unclosed-ipv6", req(b"GET http://[::1/x HTTP/1.1", b"Host: example.com"), "RFC 3986 3.2.2",
       400, "invalid authority in the request target"),
    no("absolute-form-ftp", req(b"GET ftp://example.com/x HTTP/1.1", b"Host: example.com"), "RFC 9112 3.2.2", 400,
       BAD_TARGET),
    ok("asterisk-form-options", req(b"OPTIONS * HTTP/1.1", b"Host: example.com"), "RFC 9112 3.2.4",
       env={"REQUEST_METHOD": b"OPTIONS", "PATH_INFO": b"*", "REQUEST_URI": b"*"},
       choice="OPTIONS * reaches the app with PATH_INFO \"*\" (the app answers for the server as a whole)."),
    no("asterisk-form-get", req(b"GET * HTTP/1.1", b"Host: example.com"), "RFC 9112 3.2.4", 400,
       "asterisk-form request target (*) with a method other than OPTIONS"),
    no("authority-form-get", req(b"GET example.com:80 HTTP/1.1", b"Host: example.com"), "RFC 9112 3.2.3", 400,
       BAD_TARGET),
    no("connect-authority-form", req(b"CONNECT example.com:443 HTTP/1.1", b"Host: example.com:443"),
       "RFC 9110 9.3.6", 501, CONNECT,
       "CONNECT asks for a tunnel, which an application server behind WSGI/WSAPI cannot give: 501, as for any "
       "method the server does not implement (RFC 9110 9.1)."),
    no("connect-origin-form", req(b"CONNECT /x HTTP/1.1", b"Host: example.com"), "RFC 9110 9.3.6", 501, CONNECT),
    no("target-no-slash", req(b"GET foo HTTP/1.1", b"Host: example.com"), "RFC 9112 3.2", 400, BAD_URL),
    no("target-query-only", req(b"GET ?x=1 HTTP/1.1", b"Host: example.com"), "RFC 9112 3.2.1", 400, BAD_TARGET),
    no("control-char-in-target", req(b"GET /a\x01b HTTP/1.1", b"Host: example.com"), "RFC 9112 3.2", 400,
       BAD_CHAR_TARGET),
    no("del-in-target", req(b"GET /a\x7fb HTTP/1.1", b"Host: example.com"), "RFC 9112 3.2", 400, BAD_CHAR_TARGET),
    no("del-in-query", req(b"GET /a?b\x7f HTTP/1.1", b"Host: example.com"), "RFC 9112 3.2", 400, BAD_CHAR_TARGET),
    no("tab-in-target", req(b"GET /a\tb HTTP/1.1", b"Host: example.com"), "RFC 9112 3.2", 400, BAD_URL),
    no("control-and-high-byte-in-target", req(b"GET /\xe9\x01 HTTP/1.1", b"Host: example.com"), "RFC 9112 3.2",
       400, BAD_CHAR_TARGET),

    # ---- RFC 9112 3.2 / RFC 9110 7.2: Host -----------------------------------------------
    no("http11-without-host", req(b"GET / HTTP/1.1"), "RFC 9112 3.2", 400, NO_HOST),
    no("http11-without-host-other-fields", req(b"GET / HTTP/1.1", b"Accept: */*"), "RFC 9112 3.2", 400, NO_HOST),
    no("two-hosts", get(b"/", b"Host: example.org"), "RFC 9112 3.2", 400, "more than one Host header"),
    no("two-hosts-same-value", get(b"/", b"Host: example.com"), "RFC 9112 3.2", 400, "more than one Host header"),
    no("two-hosts-other-case", get(b"/", b"hOsT: example.com"), "RFC 9112 3.2", 400, "more than one Host header"),
    no("host-with-space", req(b"GET / HTTP/1.1", b"Host: exa mple.com"), "RFC 9112 3.2", 400, BAD_HOST),
    no("host-with-slash", req(b"GET / HTTP/1.1", b"Host: example.com/evil"), "RFC 9112 3.2", 400, BAD_HOST),
    no("host-with-userinfo", req(b"GET / HTTP/1.1", b"Host: user@example.com"), "RFC 9112 3.2", 400, BAD_HOST),
    no("host-bad-port", req(b"GET / HTTP/1.1", b"Host: example.com:http"), "RFC 9112 3.2", 400, BAD_HOST),
    no("host-non-ascii", req(b"GET / HTTP/1.1", b"Host: ex\xe4mple.com"), "RFC 9112 3.2", 400, BAD_HOST,
       "A raw non-ASCII Host is not a uri-host (IDNs travel as punycode): refused, as the MUST of 3.2 says."),
    ok("host-empty", req(b"GET /e HTTP/1.1", b"Host:"), "RFC 9112 3.2", headers={"HTTP_HOST": b""}),
    ok("host-with-port", req(b"GET / HTTP/1.1", b"Host: example.com:8080"), "RFC 9110 7.2",
       headers={"HTTP_HOST": b"example.com:8080"}),
    ok("host-ipv4", req(b"GET / HTTP/1.1", b"Host: 192.0.2.1:80"), "RFC 9110 7.2", headers={"HTTP_HOST": b"192.0.2.1:80"}),
    ok("host-ipv6", req(b"GET / HTTP/1.1", b"Host: [2001:db8::1]:8080"), "RFC 9110 7.2",
       headers={"HTTP_HOST": b"[2001:db8::1]:8080"}),
    ok("host-case-kept", req(b"GET / HTTP/1.1", b"HOST: Example.COM"), "RFC 9110 5.1",
       headers={"HTTP_HOST": b"Example.COM"}),
    ok("http10-absolute-form-no-host", req(b"GET http://example.com/a HTTP/1.0"), "RFC 9112 3.2.2",
       env={"PATH_INFO": b"/a"}, headers={"HTTP_HOST": b"example.com"}),

    # ---- RFC 9112 5 / RFC 9110 5: fields -------------------------------------------------
    ok("field-name-case-insensitive", get(b"/", b"X-Foo: 1", b"x-foo: 2", b"X-FOO: 3"), "RFC 9110 5.1",
       headers={**H, "HTTP_X_FOO": b"1, 2, 3"}),
    ok("repeated-field-combined", get(b"/", b"Accept: text/html", b"Accept: */*;q=0.1"), "RFC 9110 5.3",
       headers={**H, "HTTP_ACCEPT": b"text/html, */*;q=0.1"}),
    ok("repeated-field-order-kept", get(b"/", b"X-L: c", b"X-Other: o", b"X-L: a", b"X-L: b"), "RFC 9110 5.3",
       headers={**H, "HTTP_X_L": b"c, a, b", "HTTP_X_OTHER": b"o"}),
    ok("cookies-combined", get(b"/", b"Cookie: a=1", b"Cookie: b=2; c=3"), "RFC 9113 8.2.3",
       headers={**H, "HTTP_COOKIE": b"a=1; b=2; c=3"},
       choice="Several Cookie lines (HTTP/2 gateways split them) are joined with \"; \", the Cookie list "
              "separator, not \", \" (RFC 6265 5.4; CGI servers do the same)."),
    ok("empty-field-value", get(b"/", b"X-Empty:"), "RFC 9110 5.5", headers={**H, "HTTP_X_EMPTY": b""}),
    ok("empty-field-value-with-ows", get(b"/", b"X-Empty:   "), "RFC 9110 5.5", headers={**H, "HTTP_X_EMPTY": b""}),
    ok("ows-trimmed", get(b"/", b"X-Ows: \t a b \t "), "RFC 9110 5.5", headers={**H, "HTTP_X_OWS": b"a b"}),
    ok("no-space-after-colon", get(b"/", b"X-Tight:value"), "RFC 9112 5", headers={**H, "HTTP_X_TIGHT": b"value"}),
    ok("inner-whitespace-kept", get(b"/", b"X-In: a \t b"), "RFC 9110 5.5", headers={**H, "HTTP_X_IN": b"a \t b"}),
    ok("obs-text-in-value", get(b"/", b"X-Latin: caf\xe9 \xff"), "RFC 9110 5.5",
       headers={**H, "HTTP_X_LATIN": b"caf\xe9 \xff"}),
    ok("quoted-string-value", get(b"/", b'X-Q: "a, b", "c\\"d"'), "RFC 9110 5.6.4",
       headers={**H, "HTTP_X_Q": b'"a, b", "c\\"d"'}),
    ok("all-tchar-field-name", get(b"/", b"!#$%&'*+-.^`|~09: t"), "RFC 9110 5.6.2",
       headers={**H, "HTTP_!#$%&'*+_.^`|~09": b"t"}),
    ok("long-field-value", get(b"/", b"X-Long: " + b"v" * 3000), "RFC 9110 5.4",
       headers={**H, "HTTP_X_LONG": b"v" * 3000}),
    ok("underscore-name-dropped", get(b"/", b"X_Foo: 1"), "RFC 9110 5.1", headers=H,
       choice="A field name with \"_\" is dropped: in CGI it would map to the same HTTP_ var as the name with "
              "\"-\" and could pass for it (X_Forwarded_For for X-Forwarded-For), which is why nginx and gunicorn "
              "drop it too. The request is served."),
    ok("underscore-cannot-spoof-dash", get(b"/", b"X-Forwarded-For: 192.0.2.7", b"X_Forwarded_For: 10.0.0.1"),
       "RFC 9110 5.1", headers={**H, "HTTP_X_FORWARDED_FOR": b"192.0.2.7"}),
    ok("content-type", req(b"POST /ct HTTP/1.1", b"Host: example.com", b"Content-Type: text/plain; charset=utf-8",
                           b"Content-Length: 2", body=b"hi"), "RFC 3875 4.1.3",
       env={"CONTENT_TYPE": b"text/plain; charset=utf-8", "CONTENT_LENGTH": b"2"}, body=b"hi"),
    no("two-content-types", req(b"POST /ct HTTP/1.1", b"Host: example.com", b"Content-Type: text/plain",
                                b"Content-Type: text/html", b"Content-Length: 2", body=b"hi"), "RFC 9110 8.3",
       400, "more than one Content-Type header",
       "Content-Type is a singleton; two lines may disagree (a proxy could read the other): refused."),
    ok("te-field-is-not-transfer-encoding", get(b"/", b"TE: trailers"), "RFC 9110 10.1.4",
       headers={**H, "HTTP_TE": b"trailers"}),
    no("space-before-colon", get(b"/", b"X-Sp : v"), "RFC 9112 5.1", 400, BAD_TOKEN),
    no("tab-before-colon", get(b"/", b"X-Tab\t: v"), "RFC 9112 5.1", 400, BAD_TOKEN),
    no("host-space-before-colon", req(b"GET / HTTP/1.1", b"Host : example.com"), "RFC 9112 5.1", 400, BAD_TOKEN),
    no("obs-fold-space", get(b"/", b"X-Fold: a", b" b"), "RFC 9112 5.2", 400, OBS_FOLD,
       "obs-fold: reject with 400 or replace with SP (MUST either); we reject, as llhttp does."),
    no("obs-fold-tab", get(b"/", b"X-Fold: a", b"\tb"), "RFC 9112 5.2", 400, OBS_FOLD),
    no("empty-field-name", get(b"/", b": value"), "RFC 9112 5", 400, BAD_TOKEN),
    no("field-without-colon", get(b"/", b"NoColonHere"), "RFC 9112 5", 400, BAD_TOKEN),
    no("field-name-at-sign", get(b"/", b"X@Y: v"), "RFC 9110 5.1", 400, BAD_TOKEN),
    no("field-name-paren", get(b"/", b"X(Y): v"), "RFC 9110 5.1", 400, BAD_TOKEN),
    no("field-name-non-ascii", get(b"/", b"X-\xe9: v"), "RFC 9110 5.1", 400, BAD_TOKEN),
    no("field-name-nul", get(b"/", b"X\x00Y: v"), "RFC 9110 5.1", 400, BAD_TOKEN),
    no("nul-in-value", get(b"/", b"X: a\x00b"), "RFC 9110 5.5", 400, CTL_VALUE,
       "CR, LF or NUL in a value: reject, or replace with SP (MUST either); we reject."),
    no("ctl-in-value", get(b"/", b"X: a\x01b"), "RFC 9110 5.5", 400, CTL_VALUE,
       "Other CTLs in a value (MAY be kept): refused, as llhttp does."),
    no("del-in-value", get(b"/", b"X: a\x7fb"), "RFC 9110 5.5", 400, CTL_VALUE),
    no("vt-in-value", get(b"/", b"X: a\x0bb"), "RFC 9110 5.5", 400, CTL_VALUE),
    no("header-section-too-big", get(b"/", b"X-Big: " + b"a" * 5000), "RFC 9110 15.5.20 (RFC 6585 5)", 431,
       "request header section over --buffer-size 4096"),
    no("too-many-fields", get(b"/", *[b"X-N%d: v" % i for i in range(70)]), "RFC 6585 5", 431,
       "too many request vars (--max-vars 64)"),
    ok("expect-100-continue", req(b"POST /x HTTP/1.1", b"Host: example.com", b"Expect: 100-continue",
                                  b"Content-Length: 3", body=b"abc"), "RFC 9110 10.1.1",
       env={"CONTENT_LENGTH": b"3"}, headers={**H, "HTTP_EXPECT": b"100-continue"}, body=b"abc", interim=True),
    ok("expect-100-continue-chunked", chunked(b"Expect: 100-continue", body=HELLO), "RFC 9110 10.1.1",
       headers={**TE, "HTTP_EXPECT": b"100-continue"}, body=b"hello", interim=True),
    ok("expect-100-continue-case", req(b"POST /x HTTP/1.1", b"Host: example.com", b"Expect: 100-Continue",
                                       b"Content-Length: 1", body=b"z"), "RFC 9110 10.1.1",
       headers={**H, "HTTP_EXPECT": b"100-Continue"}, body=b"z", interim=True),
    ok("expect-without-body", get(b"/", b"Expect: 100-continue"), "RFC 9110 10.1.1",
       headers={**H, "HTTP_EXPECT": b"100-continue"},
       choice="No 100 (Continue) for a request without content: there is nothing to wait for (MAY omit)."),
    ok("expect-unknown", get(b"/", b"Expect: teapot"), "RFC 9110 10.1.1", headers={**H, "HTTP_EXPECT": b"teapot"},
       choice="An expectation other than 100-continue MAY get 417; it is passed to the app instead."),
    ok("connection-close", get(b"/", b"Connection: close"), "RFC 9112 9.6",
       headers={**H, "HTTP_CONNECTION": b"close"}, closes=True),
    ok("http10-keep-alive", req(b"GET /k HTTP/1.0", b"Connection: keep-alive"), "RFC 9112 C.2.2",
       headers={"HTTP_CONNECTION": b"keep-alive"}),
    ok("upgrade-served-as-plain-request", get(b"/ws", b"Connection: Upgrade", b"Upgrade: websocket"),
       "RFC 9110 7.8", headers={**H, "HTTP_CONNECTION": b"Upgrade", "HTTP_UPGRADE": b"websocket"}, closes=True,
       choice="A server MAY ignore Upgrade: the request is served as a plain one, then the connection closes (what "
              "follows could be another protocol's bytes)."),

    # ---- RFC 9112 6: the message body ----------------------------------------------------
    ok("content-length-zero", req(b"POST /z HTTP/1.1", b"Host: example.com", b"Content-Length: 0"), "RFC 9112 6.2",
       env={"CONTENT_LENGTH": b"0"}),
    ok("post-without-length", req(b"POST /n HTTP/1.1", b"Host: example.com"), "RFC 9112 6.3",
       env={"REQUEST_METHOD": b"POST"}, body=b""),
    ok("get-with-body", req(b"GET /gb HTTP/1.1", b"Host: example.com", b"Content-Length: 4", body=b"body"),
       "RFC 9110 9.3.1", env={"CONTENT_LENGTH": b"4"}, body=b"body"),
    ok("content-length-leading-zeros", req(b"POST /lz HTTP/1.1", b"Host: example.com", b"Content-Length: 007",
                                           body=b"1234567"), "RFC 9110 8.6", env={"CONTENT_LENGTH": b"7"},
       body=b"1234567", choice="1*DIGIT allows leading zeros; the app sees the number without them."),
    ok("content-length-ows", req(b"POST /o HTTP/1.1", b"Host: example.com", b"Content-Length:   3  ", body=b"abc"),
       "RFC 9110 5.5", env={"CONTENT_LENGTH": b"3"}, body=b"abc"),
    ok("binary-body", req(b"POST /b HTTP/1.1", b"Host: example.com", b"Content-Length: 256", body=bytes(range(256))),
       "RFC 9112 6", env={"CONTENT_LENGTH": b"256"}, body=bytes(range(256))),
    no("content-length-negative", req(b"POST / HTTP/1.1", b"Host: example.com", b"Content-Length: -1"),
       "RFC 9110 8.6", 400, CL_NAN),
    no("content-length-plus", req(b"POST / HTTP/1.1", b"Host: example.com", b"Content-Length: +3", body=b"abc"),
       "RFC 9110 8.6", 400, CL_NAN),
    no("content-length-hex", req(b"POST / HTTP/1.1", b"Host: example.com", b"Content-Length: 0x3", body=b"abc"),
       "RFC 9110 8.6", 400, CL_NAN),
    no("content-length-inner-space", req(b"POST / HTTP/1.1", b"Host: example.com", b"Content-Length: 1 2"),
       "RFC 9110 8.6", 400, CL_NAN),
    no("content-length-exponent", req(b"POST / HTTP/1.1", b"Host: example.com", b"Content-Length: 1e3"),
       "RFC 9110 8.6", 400, CL_NAN),
    no("content-length-empty", req(b"POST / HTTP/1.1", b"Host: example.com", b"Content-Length:"),
       "RFC 9110 8.6", 400, CL_NAN),
    no("content-length-list-same", req(b"POST / HTTP/1.1", b"Host: example.com", b"Content-Length: 3, 3",
                                       body=b"abc"), "RFC 9112 6.3", 400, CL_NAN, CHOICE_CL_LIST),
    no("content-length-twice-same", req(b"POST / HTTP/1.1", b"Host: example.com", b"Content-Length: 3",
                                        b"Content-Length: 3", body=b"abc"), "RFC 9110 8.6", 400,
       "more than one Content-Length", CHOICE_CL_LIST),
    no("content-length-twice-different", req(b"POST / HTTP/1.1", b"Host: example.com", b"Content-Length: 3",
                                             b"Content-Length: 4", body=b"abcd"), "RFC 9112 6.3", 400,
       "more than one Content-Length"),
    no("content-length-overflow", req(b"POST / HTTP/1.1", b"Host: example.com",
                                      b"Content-Length: 99999999999999999999999"), "RFC 9110 8.6", 400,
       "Content-Length is too large"),
    no("content-length-over-limit-post", req(b"POST / HTTP/1.1", b"Host: example.com", b"Content-Length: 200000"),
       "RFC 9110 15.5.14", 413, "request body of 200000 bytes over --limit-post 100000"),
    Case("body-shorter-than-content-length", req(b"POST / HTTP/1.1", b"Host: example.com", b"Content-Length: 10",
                                                 body=b"abc"), "RFC 9112 8", 0,
         choice="A request cut short: the server closes when the client does (no response to a half request)."),
    ok("body-longer-than-content-length-is-next-request",
       req(b"POST /first HTTP/1.1", b"Host: example.com", b"Content-Length: 3", body=b"abc") + get(b"/second"),
       "RFC 9112 6.3", env={"PATH_INFO": b"/first"}, body=b"abc",
       more=((200, {"PATH_INFO": b"/second"}, H, b""),)),

    # ---- RFC 9112 6.1 / 6.3 / 7: Transfer-Encoding ---------------------------------------
    ok("chunked", chunked(body=HELLO), "RFC 9112 7.1", headers=TE, body=b"hello"),
    ok("chunked-several-chunks", chunked(body=b"3\r\nabc\r\n1\r\nd\r\nA\r\n0123456789\r\n0\r\n\r\n"),
       "RFC 9112 7.1", headers=TE, body=b"abcd0123456789"),
    ok("chunked-empty-body", chunked(body=b"0\r\n\r\n"), "RFC 9112 7.1", headers=TE, body=b""),
    ok("chunked-binary-data", chunked(body=b"6\r\n\r\n0\r\n\x00\r\n0\r\n\r\n"), "RFC 9112 7.1", headers=TE,
       body=b"\r\n0\r\n\x00"),
    ok("transfer-encoding-capitalised", req(b"POST /c HTTP/1.1", b"Host: example.com", b"Transfer-Encoding: Chunked",
                                            body=HELLO), "RFC 9112 7",
       headers={**H, "HTTP_TRANSFER_ENCODING": b"Chunked"}, body=b"hello"),
    ok("transfer-encoding-uppercase", req(b"POST /c HTTP/1.1", b"Host: example.com", b"transfer-encoding: CHUNKED",
                                          body=HELLO), "RFC 9112 7",
       headers={**H, "HTTP_TRANSFER_ENCODING": b"CHUNKED"}, body=b"hello"),
    ok("transfer-encoding-ows", req(b"POST /c HTTP/1.1", b"Host: example.com", b"Transfer-Encoding:   chunked  ",
                                    body=HELLO), "RFC 9110 5.5", headers=TE, body=b"hello"),
    ok("transfer-encoding-empty-element-before", req(b"POST /c HTTP/1.1", b"Host: example.com",
                                                     b"Transfer-Encoding: , chunked", body=HELLO),
       "RFC 9110 5.6.1.2", headers=None, body=b"hello",
       choice="Empty list elements must be ignored (MUST parse and ignore a reasonable number)."),
    ok("transfer-encoding-empty-element-after", req(b"POST /c HTTP/1.1", b"Host: example.com",
                                                    b"Transfer-Encoding: chunked,", body=HELLO),
       "RFC 9110 5.6.1.2", headers=None, body=b"hello"),
    no("transfer-encoding-chunked-twice", req(b"POST / HTTP/1.1", b"Host: example.com",
                                              b"Transfer-Encoding: chunked, chunked", body=HELLO),
       "RFC 9112 6.1", 400, TE_BAD),
    no("transfer-encoding-two-chunked-lines", req(b"POST / HTTP/1.1", b"Host: example.com",
                                                  b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked",
                                                  body=HELLO), "RFC 9112 6.1", 400, TE_BAD),
    no("transfer-encoding-gzip-chunked", req(b"POST / HTTP/1.1", b"Host: example.com",
                                             b"Transfer-Encoding: gzip, chunked", body=HELLO), "RFC 9112 6.1", 501,
       "transfer coding 'gzip' is not supported (only chunked)",
       "A transfer coding the server does not implement: 501 (SHOULD)."),
    no("transfer-encoding-gzip-then-chunked-lines", req(b"POST / HTTP/1.1", b"Host: example.com",
                                                        b"Transfer-Encoding: gzip", b"Transfer-Encoding: chunked",
                                                        body=HELLO), "RFC 9112 6.1", 501,
       "transfer coding 'gzip' is not supported (only chunked)"),
    no("transfer-encoding-chunked-not-last", req(b"POST / HTTP/1.1", b"Host: example.com",
                                                 b"Transfer-Encoding: chunked, gzip", body=HELLO),
       "RFC 9112 6.3", 400, TE_LAST),
    no("transfer-encoding-gzip-only", req(b"POST / HTTP/1.1", b"Host: example.com", b"Transfer-Encoding: gzip",
                                          body=b"abc"), "RFC 9112 6.3", 400, TE_LAST),
    no("transfer-encoding-identity", req(b"POST / HTTP/1.1", b"Host: example.com", b"Transfer-Encoding: identity",
                                         body=b"abc"), "RFC 9112 6.3", 400, TE_LAST),
    no("transfer-encoding-xchunked", req(b"POST / HTTP/1.1", b"Host: example.com", b"Transfer-Encoding: xchunked",
                                         body=HELLO), "RFC 9112 6.3", 400, TE_LAST),
    no("transfer-encoding-chunked-param", req(b"POST / HTTP/1.1", b"Host: example.com",
                                              b"Transfer-Encoding: chunked;q=1", body=HELLO), "RFC 9112 7", 400,
       TE_LAST, "chunked defines no parameters: a parameter makes it a coding we do not know."),
    no("transfer-encoding-vt", req(b"POST / HTTP/1.1", b"Host: example.com", b"Transfer-Encoding: \x0bchunked",
                                   body=HELLO), "RFC 9110 5.5", 400, CTL_VALUE),
    no("transfer-encoding-empty", req(b"POST / HTTP/1.1", b"Host: example.com", b"Transfer-Encoding:", body=HELLO),
       "RFC 9112 6.1", 400, "invalid Transfer-Encoding (empty)"),
    no("transfer-encoding-http10", req(b"POST / HTTP/1.0", b"Transfer-Encoding: chunked", body=HELLO),
       "RFC 9112 6.1", 400, "Transfer-Encoding in an HTTP/1.0 request",
       "An HTTP/1.0 message with Transfer-Encoding has faulty framing (MUST): refused."),
    no("transfer-encoding-space-before-colon", req(b"POST / HTTP/1.1", b"Host: example.com",
                                                   b"Transfer-Encoding : chunked", body=HELLO),
       "RFC 9112 5.1", 400, BAD_TOKEN),
    no("chunked-over-limit-post", chunked(body=b"ffff\r\n" + b"a" * 0xffff + b"\r\nffff\r\n" + b"a" * 0xffff
                                          + b"\r\n0\r\n\r\n"), "RFC 9110 15.5.14", 413,
       "request body over --limit-post 100000"),

    # ---- RFC 9112 7.1 / 7.1.1 / 7.1.2: chunked coding ------------------------------------
    ok("chunk-size-uppercase-hex", chunked(body=b"A\r\n0123456789\r\n0\r\n\r\n"), "RFC 9112 7.1", headers=TE,
       body=b"0123456789"),
    ok("chunk-size-lowercase-hex", chunked(body=b"a\r\n0123456789\r\n0\r\n\r\n"), "RFC 9112 7.1", headers=TE,
       body=b"0123456789"),
    ok("chunk-size-leading-zeros", chunked(body=b"0005\r\nhello\r\n000\r\n\r\n"), "RFC 9112 7.1", headers=TE,
       body=b"hello"),
    ok("chunk-ext", chunked(body=b"5;foo=bar\r\nhello\r\n0\r\n\r\n"), "RFC 9112 7.1.1", headers=TE, body=b"hello"),
    ok("chunk-ext-bws-both-sides-of-semicolon", chunked(body=b"5 ; foo=bar\r\nhello\r\n0\r\n\r\n"), "RFC 9112 7.1.1",
       headers=TE, body=b"hello"),
    ok("chunk-ext-bws-before-semicolon", chunked(body=b"5 ;foo\r\nhello\r\n0\r\n\r\n"), "RFC 9112 7.1.1",
       headers=TE, body=b"hello"),
    ok("chunk-ext-bws-after-semicolon", chunked(body=b"5; foo\r\nhello\r\n0\r\n\r\n"), "RFC 9112 7.1.1",
       headers=TE, body=b"hello"),
    ok("chunk-ext-bws-around-equals", chunked(body=b"5;foo = bar\r\nhello\r\n0\r\n\r\n"), "RFC 9112 7.1.1",
       headers=TE, body=b"hello"),
    ok("chunk-ext-bws-tabs", chunked(body=b"5\t;\tfoo\t=\tbar\r\nhello\r\n0\r\n\r\n"), "RFC 9112 7.1.1",
       headers=TE, body=b"hello"),
    ok("chunk-ext-icap-ieof", chunked(body=b"5\r\nhello\r\n0; ieof\r\n\r\n"), "RFC 9112 7.1.1 (RFC 3507 4.5)",
       headers=TE, body=b"hello"),
    ok("chunk-ext-name-only", chunked(body=b"5;foo\r\nhello\r\n0\r\n\r\n"), "RFC 9112 7.1.1", headers=TE,
       body=b"hello"),
    ok("chunk-ext-several", chunked(body=b'5;a=1;b;c="x"\r\nhello\r\n0\r\n\r\n'), "RFC 9112 7.1.1", headers=TE,
       body=b"hello"),
    ok("chunk-ext-quoted-with-space", chunked(body=b'5;a="b c"\r\nhello\r\n0\r\n\r\n'), "RFC 9112 7.1.1",
       headers=TE, body=b"hello"),
    ok("chunk-ext-quoted-pair", chunked(body=b'5;a="x\\"y"\r\nhello\r\n0\r\n\r\n'), "RFC 9110 5.6.4", headers=TE,
       body=b"hello"),
    ok("chunk-ext-quoted-obs-text", chunked(body=b'5;a="caf\xe9"\r\nhello\r\n0\r\n\r\n'), "RFC 9110 5.6.4",
       headers=TE, body=b"hello"),
    ok("chunk-ext-quoted-semicolon", chunked(body=b'5;a=";b=c"\r\nhello\r\n0\r\n\r\n'), "RFC 9110 5.6.4",
       headers=TE, body=b"hello"),
    ok("chunk-ext-on-last-chunk", chunked(body=b"5\r\nhello\r\n0;done=1\r\n\r\n"), "RFC 9112 7.1.1", headers=TE,
       body=b"hello"),
    ok("trailer-fields-dropped", chunked(b"Trailer: X-Sum", body=b"5\r\nhello\r\n0\r\nX-Sum: 42\r\nX-More: y\r\n\r\n"),
       "RFC 9112 7.1.2", headers={**TE, "HTTP_TRAILER": b"X-Sum"}, body=b"hello",
       choice="Trailer fields are checked and then discarded (MAY); none is merged into the header section, "
              "so the app never sees a field that came after it started."),
    ok("trailer-with-obs-text", chunked(body=b"5\r\nhello\r\n0\r\nX-T: caf\xe9\r\n\r\n"), "RFC 9112 7.1.2",
       headers=TE, body=b"hello"),
    no("chunk-size-not-hex", chunked(body=b"zz\r\nabc\r\n0\r\n\r\n"), "RFC 9112 7.1", 400, NOT_HEX),
    no("chunk-size-0x", chunked(body=b"0x5\r\nhello\r\n0\r\n\r\n"), "RFC 9112 7.1", 400, BAD_EXT),
    no("chunk-size-negative", chunked(body=b"-5\r\nhello\r\n0\r\n\r\n"), "RFC 9112 7.1", 400, NOT_HEX),
    no("chunk-size-plus", chunked(body=b"+5\r\nhello\r\n0\r\n\r\n"), "RFC 9112 7.1", 400, NOT_HEX),
    no("chunk-size-leading-space", chunked(body=b" 5\r\nhello\r\n0\r\n\r\n"), "RFC 9112 7.1", 400, NOT_HEX),
    no("chunk-size-trailing-space", chunked(body=b"5 \r\nhello\r\n0\r\n\r\n"), "RFC 9112 7.1.1", 400,
       "whitespace after the chunk size without an extension",
       "BWS belongs to a chunk extension: whitespace after the size with no \";\" is not in the grammar. Some "
       "parsers take it; we refuse it, as llhttp does."),
    no("chunk-size-empty", chunked(body=b"\r\nhello\r\n0\r\n\r\n"), "RFC 9112 7.1", 400, NOT_HEX),
    no("chunk-size-overflow", chunked(body=b"1" + b"0" * 16 + b"\r\n"), "RFC 9112 7.1", 400,
       "chunk size is too large"),
    no("chunk-size-nul", chunked(body=b"5\x00\r\nhello\r\n0\r\n\r\n"), "RFC 9112 7.1", 400, BAD_EXT),
    no("chunk-ext-empty-name", chunked(body=b"5;=x\r\nhello\r\n0\r\n\r\n"), "RFC 9112 7.1.1", 400, BAD_EXT),
    no("chunk-ext-semicolon-only", chunked(body=b"5;\r\nhello\r\n0\r\n\r\n"), "RFC 9112 7.1.1", 400, BAD_EXT),
    no("chunk-ext-empty-value", chunked(body=b"5;a=\r\nhello\r\n0\r\n\r\n"), "RFC 9112 7.1.1", 400, BAD_EXT),
    no("chunk-ext-unterminated-quote", chunked(body=b'5;a="x\r\nhello\r\n0\r\n\r\n'), "RFC 9110 5.6.4", 400, BAD_EXT),
    no("chunk-ext-space-in-token", chunked(body=b"5;a=b c\r\nhello\r\n0\r\n\r\n"), "RFC 9112 7.1.1", 400, BAD_EXT),
    no("chunk-ext-ctl", chunked(body=b"5;a\x01\r\nhello\r\n0\r\n\r\n"), "RFC 9112 7.1.1", 400, BAD_EXT),
    no("chunk-ext-bare-cr", chunked(body=b"5;a\rb\r\nhello\r\n0\r\n\r\n"), "RFC 9112 2.2", 400, BAD_EXT),
    no("chunk-size-bare-lf", chunked(body=b"5\nhello\r\n0\r\n\r\n"), "RFC 9112 7.1", 400, NO_CRLF_CHUNK, CHOICE_LF),
    no("chunk-data-longer-than-size", chunked(body=b"5\r\nhelloXX\r\n0\r\n\r\n"), "RFC 9112 7.1", 400,
       "chunk data not followed by CRLF"),
    no("chunk-data-bare-lf", chunked(body=b"5\r\nhello\n0\r\n\r\n"), "RFC 9112 7.1", 400,
       "chunk data not followed by CRLF"),
    no("last-chunk-bare-lf", chunked(body=b"5\r\nhello\r\n0\n\r\n"), "RFC 9112 7.1", 400, NO_CRLF_CHUNK),
    no("trailer-end-bare-lf", chunked(body=b"5\r\nhello\r\n0\r\n\n"), "RFC 9112 7.1.2", 400,
       "trailer line does not end with CRLF"),
    no("trailer-obs-fold", chunked(body=b"5\r\nhello\r\n0\r\nX: a\r\n b\r\n\r\n"), "RFC 9112 5.2", 400,
       "invalid trailer field line"),
    no("trailer-space-before-colon", chunked(body=b"5\r\nhello\r\n0\r\nX : y\r\n\r\n"), "RFC 9112 5.1", 400,
       "invalid trailer field line"),
    no("trailer-without-colon", chunked(body=b"5\r\nhello\r\n0\r\nNoColon\r\n\r\n"), "RFC 9112 7.1.2", 400,
       "invalid trailer field line"),
    no("trailer-ctl", chunked(body=b"5\r\nhello\r\n0\r\nX: a\x01\r\n\r\n"), "RFC 9110 5.5", 400,
       "invalid trailer field line"),
    no("trailer-section-too-big", chunked(body=b"5\r\nhello\r\n0\r\n" + b"X-T: " + b"t" * 3000 + b"\r\n"
                                         + b"X-U: " + b"u" * 3000 + b"\r\n\r\n"), "RFC 9112 7.1.2", 431,
       "trailer section over --buffer-size 4096"),
    no("chunk-size-line-too-long", chunked(body=b"5;" + b"a" * 5000 + b"\r\nhello\r\n0\r\n\r\n"), "RFC 9112 7.1.1",
       400, "chunk size line over --buffer-size 4096",
       "A server ought to limit chunk extensions (RFC 9112 7.1.1): a chunk line longer than --buffer-size is refused."),

    # ---- RFC 9112 9.3 / 9.6: persistence, pipelining --------------------------------------
    ok("pipelined-two-gets", get(b"/one") + get(b"/two"), "RFC 9112 9.3.2", env={"PATH_INFO": b"/one"},
       more=((200, {"PATH_INFO": b"/two"}, H, b""),)),
    ok("pipelined-post-then-get", req(b"POST /p HTTP/1.1", b"Host: example.com", b"Content-Length: 2", body=b"ab")
       + get(b"/g"), "RFC 9112 9.3.2", env={"PATH_INFO": b"/p"}, body=b"ab",
       more=((200, {"PATH_INFO": b"/g"}, H, b""),)),
    ok("pipelined-chunked-then-get", chunked(body=b"2;x = y\r\nab\r\n0\r\n\r\n") + get(b"/g"), "RFC 9112 9.3.2",
       headers=TE, body=b"ab", more=((200, {"PATH_INFO": b"/g"}, H, b""),)),
    ok("pipelined-odd-method-between", get(b"/1") + req(b"-ODD /2 HTTP/1.1", b"Host: example.com") + get(b"/3"),
       "RFC 9112 9.3.2", env={"PATH_INFO": b"/1"},
       more=((200, {"REQUEST_METHOD": b"-ODD", "PATH_INFO": b"/2"}, H, b""), (200, {"PATH_INFO": b"/3"}, H, b""))),
    ok("pipelined-raw-byte-then-chunked", get(b"/\xe9") + chunked(body=b"1 ; a\r\nz\r\n0\r\n\r\n"),
       "RFC 9112 9.3.2", env={"PATH_INFO": b"/\xe9"}, more=((200, {"PATH_INFO": b"/c"}, TE, b"z"),)),
    ok("pipelined-then-garbage", get(b"/ok") + b"GARBAGE\r\n\r\n", "RFC 9112 9.3.2", env={"PATH_INFO": b"/ok"},
       more=((400, None, None, b""),)),
    ok("data-after-connection-close-ignored", get(b"/c", b"Connection: close") + get(b"/never"), "RFC 9112 9.6",
       headers={**H, "HTTP_CONNECTION": b"close"}, closes=True,
       choice="After a request with Connection: close the server answers it and closes; what follows is not read."),

    # ---- RFC 9112 11.2: request smuggling -------------------------------------------------
    no("smuggle-cl-te", req(b"POST / HTTP/1.1", b"Host: example.com", b"Content-Length: 6",
                            b"Transfer-Encoding: chunked", body=b"0\r\n\r\nG"), "RFC 9112 6.3", 400, CL_TE,
       "Both fields: the RFC lets a server reject it or let Transfer-Encoding win and close (MAY); we reject."),
    no("smuggle-te-cl", req(b"POST / HTTP/1.1", b"Host: example.com", b"Transfer-Encoding: chunked",
                            b"Content-Length: 3", body=b"8\r\nSMUGGLED\r\n0\r\n\r\n"), "RFC 9112 6.3", 400, CL_TE),
    no("smuggle-cl-te-identity", req(b"POST / HTTP/1.1", b"Host: example.com", b"Content-Length: 4",
                                     b"Transfer-Encoding: identity", body=b"abcd"), "RFC 9112 6.3", 400, CL_TE),
    no("smuggle-te-obs-fold", req(b"POST / HTTP/1.1", b"Host: example.com", b"Transfer-Encoding:", b" chunked",
                                  body=HELLO), "RFC 9112 5.2", 400, OBS_FOLD),
    no("smuggle-te-tab-before-colon", req(b"POST / HTTP/1.1", b"Host: example.com", b"Transfer-Encoding\t: chunked",
                                          b"Content-Length: 3", body=b"abc"), "RFC 9112 5.1", 400, BAD_TOKEN),
    no("smuggle-te-case-and-identity", req(b"POST / HTTP/1.1", b"Host: example.com", b"transfer-encoding: chunked",
                                           b"Transfer-Encoding: identity", body=HELLO), "RFC 9112 6.3", 400, TE_LAST),
    no("smuggle-te-xchunked-with-cl", req(b"POST / HTTP/1.1", b"Host: example.com", b"Transfer-Encoding: xchunked",
                                          b"Content-Length: 5", body=b"hello"), "RFC 9112 6.3", 400, CL_TE),
    no("smuggle-cl-bare-lf", b"POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\n\r\nhello", "RFC 9112 2.2",
       400, LINE_END, CHOICE_LF),
    no("smuggle-te-nul", req(b"POST / HTTP/1.1", b"Host: example.com", b"Transfer-Encoding: chunked\x00",
                             body=HELLO), "RFC 9110 5.5", 400, CTL_VALUE),
    no("smuggle-chunk-size-overflow-wrap", chunked(body=b"10000000000000005\r\nhello\r\n0\r\n\r\n"), "RFC 9112 7.1",
       400, "chunk size is too large"),
    no("smuggle-cl-leading-space-in-name", req(b"POST / HTTP/1.1", b"Host: example.com", b" Content-Length: 5",
                                               body=b"hello"), "RFC 9112 2.2", 400, OBS_FOLD),
    ok("smuggle-content-length-underscore-is-not-a-length",
       req(b"POST /u HTTP/1.1", b"Host: example.com", b"Content_Length: 21", body=get(b"/smuggled")),
       "RFC 9112 6.3", env={"PATH_INFO": b"/u"}, body=b"",
       more=((200, {"PATH_INFO": b"/smuggled"}, H, b""),),
       choice="Content_Length is not Content-Length: the request has no body and the bytes after it are the next "
              "request, which every HTTP parser agrees on (the field is dropped, so the app cannot mistake it "
              "for CONTENT_LENGTH either)."),
    no("smuggle-te-in-http10-with-cl", req(b"POST / HTTP/1.0", b"Transfer-Encoding: chunked", b"Content-Length: 5",
                                           body=b"0\r\n\r\n"), "RFC 9112 6.1", 400, CL_TE),
    no("smuggle-request-in-chunk-ext", chunked(body=b"5;x\r\nGET / HTTP/1.1\r\n\r\nhello\r\n0\r\n\r\n"),
       "RFC 9112 7.1.1", 400, "chunk data not followed by CRLF"),
]
