/* native.h: the `_uwsgi_native` CPython extension (core/cpython/native.c), the C half of the
 * Python request path (issue 16). Not part of uwsgi.h: that header is also cffi's cdef, and these
 * functions take and return Python objects, which cffi cannot. Built by uwsgiconfig.py
 * (build_native) into build/lib/_uwsgi_native<EXT_SUFFIX>, linked with core/packet.c.
 *
 * The Python callers (uwsgid/net/packet.py, uwsgid/net/request.py, cffi_plugin/environ.py) keep
 * their pure-Python code as the fallback: a tree without this module works as before.
 *
 * Python API (all functions hold the GIL; none keeps a reference to its arguments):
 *
 *   parse_vars(block: bytes, max_vars: int) -> dict[bytes, bytes] | int
 *       The vars block of a uwsgi packet (after its 4-byte header) as a dict, built in one pass
 *       over core/packet.c's offsets. A malformed block returns its negative uwsgi_packet_error
 *       (uwsgi.h) instead of raising, so that the caller words the error as it always has.
 *       Keys repeat from request to request behind one front end: the key objects of the last
 *       packet are kept per position and reused when the bytes match (their hash cached).
 *
 *   environ(vars: dict[bytes, bytes], base: dict[str, object]) -> dict[str, object]
 *       A PEP 3333 environ: a copy of `base` (the per-server constant keys and the defaults)
 *       updated with every var, names and values decoded latin-1 (byte n -> U+00nn, so any
 *       byte string is accepted), HTTP_CONTENT_TYPE / HTTP_CONTENT_LENGTH left out, SCRIPT_NAME
 *       stripped of trailing slashes, and wsgi.url_scheme from UWSGI_SCHEME or HTTPS when
 *       either var is present (uWSGI's rule, as cffi_plugin.environ.url_scheme). The caller adds
 *       wsgi.input and uwsgi.core. TypeError when a key or value is not bytes.
 *
 *   response(status: bytes, headers: list, body: list | tuple | bytes, flags: int)
 *       -> (data: bytes, code, keepalive, headers_size, header_cnt, response_size) | None
 *       The whole response, head and body, serialised into one bytes for one send, when the
 *       body is known at once (the common WSGI shapes): the framing of uwsgid.net.request's
 *       flush(final=True) for a response that had not started. flags: RESP_HTTP (an HTTP
 *       socket: the app's hop-by-hop headers dropped, Connection managed), RESP_HTTP11,
 *       RESP_KEEPALIVE, RESP_HEAD (a HEAD request: no body). Returns None, having changed
 *       nothing, for anything it does not handle, and the caller takes the Python path, which
 *       raises the same errors it always has: a status that is not "NNN" or "NNN reason", a
 *       header that is not a 2-tuple of bytes, CR or LF in a header, a Content-Length header
 *       that is not a decimal number, a body item that is not bytes, a head over HEAD_MAX, a
 *       body of BODY_MAX bytes or more.
 *
 *   http_vars(base: dict, method: bytes, protocol: bytes, url: bytes, headers: list, keys: dict)
 *       -> (vars: dict[bytes, bytes], content_length: int, host: bytes | None) | None
 *       The CGI vars of an HTTP request whose head llhttp accepted (uwsgid/net/protocols/http.py,
 *       on_headers_complete): a copy of `base` with SERVER_PROTOCOL, REQUEST_METHOD,
 *       REQUEST_URI, QUERY_STRING, PATH_INFO (percent-decoded as urllib's unquote_to_bytes) and
 *       one var per (name, value) header, its name mapped by `keys` (the parser's name -> var
 *       cache); content_length -1 when absent. None, nothing kept, for what the Python path
 *       must judge: a target that is not /path or has a fragment, a header name not in `keys`
 *       yet, a repeated field (or a name with "_"), Transfer-Encoding, Expect, a Content-Length
 *       with leading zeros or blanks or over 15 digits.
 *
 *   ws_recv(fd: int, max_size: int, message_size: int, cut: bool)
 *       -> (info: int, payload: bytes | None, rest: bytes, filled: bool) | int
 *       One read(fd) of up to WS_RECV bytes for a WebSocket session (uwsgid/net/websocket.py).
 *       With `cut`, a whole client frame at its start is checked and unmasked by core/wsframe.c
 *       (uwsgi_ws_frame, with max_size and message_size as there): info is that function's
 *       answer (>= 0: fin, opcode, header and payload lengths), payload the frame's unmasked
 *       payload, rest the bytes read after it. info < 0 (more bytes needed, a violation, or
 *       `cut` false): payload None and rest every byte read, untouched. filled: the read took
 *       WS_RECV bytes (more may wait). An int when nothing was read: 0 at the end of the
 *       stream, else -errno (-EAGAIN: nothing there).
 *
 *   ws_send(fd: int, first_byte: int, payload: bytes-like) -> int
 *       One unmasked server frame (first_byte: FIN, RSV and opcode) written with one writev:
 *       the number of its bytes not written (0: all; the whole frame on EAGAIN or EINTR; the
 *       caller writes the rest), or -errno on another error.
 *
 *   asgi_scope(block: bytes, state: dict, asgi) -> dict | None
 *       The ASGI HTTP scope of a uwsgi vars block (the native lane's for an ASGI app,
 *       cffi_plugin/asgi_lane.py), as cffi_plugin.asgi_http.scope_from_vars builds it from the
 *       vars: headers lower-cased from HTTP_* (and CONTENT_TYPE/CONTENT_LENGTH), `state`
 *       copied, `asgi` the scope's "asgi" entry. None for what the Python builder must word: a
 *       malformed block, a body or an upgrade, HTTPS or UWSGI_SCHEME, a path that is not ASCII,
 *       a protocol other than HTTP/1.0 and 1.1, a port that is not 1-5 digits.
 */
#ifndef UWSGI_NATIVE_H
#define UWSGI_NATIVE_H

/* response() flags */
enum uwsgi_native_resp_flags {
    UWSGI_RESP_HTTP = 1,
    UWSGI_RESP_HTTP11 = 2,
    UWSGI_RESP_KEEPALIVE = 4,
    UWSGI_RESP_HEAD = 8
};

/* Positions of parse_vars' key cache: a packet with more vars builds the rest each time. */
enum { UWSGI_NATIVE_KEY_SLOTS = 64 };
/* environ()'s name cache (bytes -> str) stops growing here: header names vary per client. */
enum { UWSGI_NATIVE_NAMES_MAX = 1024 };
/* response() gives up on a head (status line and headers) larger than this, and on a body of
 * BODY_MAX bytes or more: uwsgid.net.request flushes the body it buffers at that size (its
 * SLICE), so such a body goes out chunked, a slice at a time, under back-pressure. */
enum { UWSGI_NATIVE_HEAD_MAX = 65536, UWSGI_NATIVE_BODY_MAX = 65536 };

/* ws_recv()'s read size: a session's bytes per read (uwsgid/net/wsframes.RECV). */
enum { UWSGI_NATIVE_WS_RECV = 65536 };

#endif
