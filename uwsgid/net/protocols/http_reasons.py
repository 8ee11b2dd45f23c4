"""Why an HTTP request is refused, in words a log reader can act on: llhttp's errors translated,
and the reasons both HTTP parsing paths give (uwsgid.net.protocols.http and http_exact)."""

from __future__ import annotations

NO_CONNECT = "CONNECT (a tunnel) is not supported by an application server"


class Reject(Exception):
    """Raised from a parser callback to stop llhttp: the parser's _reject holds (status, why)."""


# llhttp's reasons (str(HttpParserError)) in words a log reader can act on.
REASONS = {
    "Invalid method encountered": "method is not a token",
    "Expected space after method": "method not followed by a single space",
    "Invalid method for HTTP/x.x request": "method is not a token",
    "Unexpected start char in url": "request target is not /path, an http(s) URL or *",
    "Unexpected char in url schema": "request target is not /path, an http(s) URL or *",
    "Unexpected char in url server": "invalid authority in the request target",
    "Invalid characters in url": "invalid request target (not /path, an http(s) URL or *, or a character "
                                 "not allowed in it)",
    "Invalid char in url path": "invalid character in the request target",
    "Invalid char in url query": "invalid character in the request target",
    "Invalid char in url fragment start": "invalid character in the request target",
    "Expected HTTP/, RTSP/ or ICE/": "invalid HTTP version in the request line",
    "Expected SOURCE method for ICE/x.x request": "invalid HTTP version in the request line",
    "Invalid HTTP version": "invalid HTTP version in the request line",
    "Invalid major version": "invalid HTTP version in the request line",
    "Invalid minor version": "invalid HTTP version in the request line",
    "Expected dot": "invalid HTTP version in the request line",
    "Expected CRLF after version": "request line does not end with CRLF after the version",
    "Unexpected space after start line": "whitespace at the start of a header line (obs-fold)",
    "Unexpected whitespace after header value": "whitespace at the start of a header line (obs-fold)",
    "Invalid header token": "invalid header field name (a character outside token, or whitespace "
                            "before the colon)",
    "Invalid header field char": "invalid header field name (a character outside token, or whitespace "
                                 "before the colon)",
    "Invalid header value char": "control character in a header value",
    "Missing expected CR after header value": "header line does not end with CRLF",
    "Missing expected LF after header value": "header line does not end with CRLF",
    "Expected LF after headers": "header section does not end with CRLF",
    "Expected LF after CR": "bare CR in the request",
    "Expected CRLF": "line does not end with CRLF",
    "Content-Length can't be present with Transfer-Encoding": "both Content-Length and Transfer-Encoding",
    "Transfer-Encoding can't be present with Content-Length": "both Content-Length and Transfer-Encoding",
    "Duplicate Content-Length": "more than one Content-Length",
    "Invalid character in Content-Length": "Content-Length is not a decimal number",
    "Empty Content-Length": "Content-Length is not a decimal number",
    "Content-Length overflow": "Content-Length is too large",
    "Invalid `Transfer-Encoding` header value": "invalid Transfer-Encoding (chunked more than once, or "
                                                "not last)",
    "Empty Transfer-Encoding": "invalid Transfer-Encoding (empty)",
    "Request has invalid `Transfer-Encoding`": "Transfer-Encoding does not end with chunked",
    "Data after `Connection: close`": "data after a request with Connection: close",
    "Expected HTTP/2 Connection Preface": "HTTP/2 connection preface on an HTTP/1.1 socket",
    "Pause on PRI/Upgrade": "HTTP/2 connection preface on an HTTP/1.1 socket",
}
TE_LAST = "Transfer-Encoding does not end with chunked"
TE_TWICE = "invalid Transfer-Encoding (chunked more than once)"
# The refusals the exact path may overturn: the request is re-read there.
RECOVER = frozenset(("Invalid method encountered", "Invalid method for HTTP/x.x request",
                      "Expected space after method",
                      "Invalid HTTP version", "Invalid char in url path", "Invalid char in url query",
                      "Invalid char in url fragment start", "Invalid `Transfer-Encoding` header value"))


def reason(e: Exception, data: bytes = b"") -> str:
    text = str(e)
    if text.startswith("Invalid header") and (b"\r\n " in data or b"\r\n\t" in data):
        return REASONS["Unexpected whitespace after header value"]   # llhttp's word for some obs-folds
    return REASONS.get(text) or f"malformed request ({text[:80]})"
