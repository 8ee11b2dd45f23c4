"""One WSAPI request on a lua_State: call the app (runtime.lua's M.call), turn its status and
headers into the core's form, then drive the body slice by slice.

A body that ends in its first slice (a string, an array of strings, a short iterator) is
written at once and request() returns None, so the core can frame it with Content-Length.
A longer one is streamed by a generator that yields between slices: each yield flushes and,
when the app armed a wait (uwsgi.async_sleep...), suspends this core.

The per-request end (the GC step, see LuaState.after_request) is the plugin's after_request,
which the core calls once the response is out: the client does not wait for it.

Errors do better than uWSGI: an error in the app, an invalid status/headers/body or a memory
error before the headers went out is a 500 with the Lua traceback in the log; an error in the
body after the headers is logged and re-raised as LuaBodyError so the core leaves the response
visibly truncated.
"""

from __future__ import annotations

from http import HTTPStatus

from uwsgid.util.log import log

# Mirrors of runtime.lua's result codes.
OK, APP_ERROR, BAD_RESPONSE, BODY_ERROR = 0, 1, 2, 3
B_END, B_MORE, B_WAIT, B_ERROR = 0, 1, 2, 3

ERROR_STATUS = b"500 Internal Server Error"
ERROR_HEADERS = [(b"Content-Type", b"text/plain")]
ERROR_BODY = b"500 Internal Server Error\n"


class BadResponse(Exception):
    pass


class LuaBodyError(Exception):
    """The body iterator failed after the headers were sent (the response is incomplete)."""


_REASONS = {str(s.value).encode(): s.phrase.encode() for s in HTTPStatus}
_status_cache: dict[bytes, bytes] = {}


def status_line(status: bytes) -> bytes:
    """b"200" / b"200 OK" / b"404 Gone Fishing" -> the status line; reason added when missing."""
    line = _status_cache.get(status)
    if line is not None:
        return line
    code, _, reason = status.strip().partition(b" ")
    if len(code) != 3 or not code.isdigit() or not 100 <= int(code) <= 999:
        raise BadResponse(f"invalid status {status.decode('latin-1')!r} (a 3-digit code, optionally with a reason)")
    reason = reason.strip()
    if any(c in reason for c in (b"\r", b"\n", b"\0")):
        raise BadResponse("the status reason has CR, LF or NUL in it")
    if not reason:
        reason = _REASONS.get(code, b"Unknown")
    line = code + b" " + reason
    if len(_status_cache) < 256:
        _status_cache[status] = line
    return line


_headers_cache: dict[bytes, tuple] = {}


def split_headers(flat: bytes) -> tuple[tuple[bytes, bytes], ...]:
    """b"name\0value\0..." -> ((name, value), ...). An app sends the same few header sets
    again and again: those are kept (a tuple, which nobody can edit in place)."""
    headers = _headers_cache.get(flat)
    if headers is not None:
        return headers
    if not flat:
        return ()
    parts = flat.split(b"\0")
    headers = tuple(zip(parts[0::2], parts[1::2]))
    if len(_headers_cache) < 256 and len(flat) <= 4096:
        _headers_cache[flat] = headers
    return headers


def _where(req) -> str:
    v = req.vars
    uri = v.get(b"REQUEST_URI") or (v.get(b"SCRIPT_NAME", b"") + v.get(b"PATH_INFO", b""))
    return f"{v.get(b'REQUEST_METHOD', b'-').decode('latin-1')} {uri.decode('latin-1')}"


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _fail(st, req, message: str) -> None:
    """Log the problem and answer 500 (headers not sent yet)."""
    log(f"[uwsgi-lua] {message}")
    st.errors += 1
    if _text(message).find("not enough memory") >= 0:
        st.recover_memory()
    if req.headers_sent:
        raise LuaBodyError(message.splitlines()[0])
    req.start_response(ERROR_STATUS, list(ERROR_HEADERS))
    req.write(ERROR_BODY)


def handle(st, req, app_path: bytes):
    """Serve req on lua_State st: None when done, else a generator (see the module doc)."""
    memory_error = st.lupa.LuaMemoryError
    st.req = req
    slot = req.core.id
    if st.memory_near_cap():
        st.recover_memory()
    try:
        # behind nginx the packet's vars block is parsed in Lua (in C with the module): cheaper
        # than table_from. Over HTTP, table_from stays: joining the dict into one string for C
        # costs more in Python (~2 us for 14 vars) than lupa's conversion (measured).
        block = req.vars_block
        res = st.call(block if block is not None else st.table_from(req.vars), app_path, slot)
    except (memory_error, st.lupa.LuaError) as exc:
        return call_failed(st, req, slot, exc)
    return answered(st, req, slot, res)


def call_failed(st, req, slot: int, exc: BaseException) -> None:
    """st.call raised: the state's memory cap, or an error of the plugin's own Lua side (outside
    the app's xpcall); anything else is not ours to word (re-raised for the core)."""
    if isinstance(exc, st.lupa.LuaMemoryError):
        st.abandon(slot)
        _fail(st, req, f"Lua memory limit reached in the app ({_where(req)}): {exc}")
        return None
    if isinstance(exc, st.lupa.LuaError):
        st.abandon(slot)
        _fail(st, req, f"Lua error serving {_where(req)}: {exc}")
        return None
    raise exc


def answered(st, req, slot: int, res):
    """What st.call returned for req: the response's head and first slice written, then None
    (done) or a generator for the rest of the body (see the module doc)."""
    memory_error = st.lupa.LuaMemoryError
    code = res[0]
    if getattr(req, "websocket", None) is not None:
        if code == OK and res[4] != B_END:
            return _stream(st, req, slot, memory_error)   # the session goes on in the body (--async)
        return _websocket_end(req, code, res)
    if code == OK:
        _, status, flat_headers, chunk, bstate = res
        try:
            line = status_line(status)
        except BadResponse as exc:
            st.abandon(slot)
            _fail(st, req, f"invalid response from the Lua app ({_where(req)}): {exc}")
            return None
        if not req.headers_sent:       # else a blocking call flushed them already (flush_now)
            req.start_response(line, split_headers(flat_headers))
        if chunk:
            req.write(chunk)
        if bstate == B_END:
            return None
        # a wait armed in the first slice (B_WAIT) stays on the core, which runs our first step
        # once it fires (the plugin contract)
        return _stream(st, req, slot, memory_error)
    if code == APP_ERROR:
        _fail(st, req, f"error in the Lua app ({_where(req)}):\n{_text(res[1])}")
    elif code == BODY_ERROR:
        _fail(st, req, f"{_text(res[1])} ({_where(req)})")
    else:
        _fail(st, req, f"invalid response from the Lua app ({_where(req)}): {_text(res[1])}")
    return None


def _websocket_end(req, code: int, res) -> None:
    """The app ran a WebSocket session (uwsgi.websocket_handshake): the 101 was its response,
    nothing else goes out. An "unable to receive/send websocket message" error is how a
    session ends when the client leaves: not logged as an app error."""
    if code != OK:
        message = _text(res[1]) if len(res) > 1 else ""
        if "websocket message" not in message:
            log(f"[uwsgi-lua] error in the Lua app's websocket session ({_where(req)}):\n{message}")
    return None


def flush_now(req, data: bytes, status: bytes, flat_headers: bytes) -> None:
    """The body is about to block in Lua (os.execute...): send its head (the first time) and
    `data` now. A bad status is left for the normal path to report (a 500)."""
    try:
        if not req.headers_sent:
            if not req.status:
                req.start_response(status_line(status), split_headers(flat_headers))
        if data:
            req.write(data)
        req.flush()
    except BadResponse:
        pass


def next_slice(st, req, slot, memory_error) -> int:
    """Drive the body of `slot` one slice on (st.req must be req): its data written to req, then
    B_END (the body is over), B_MORE or B_WAIT. A failure is logged and raised as LuaBodyError;
    the caller abandons the slot then."""
    try:
        res = st.resume(slot)
    except memory_error as exc:
        log(f"[uwsgi-lua] Lua memory limit reached in the response body ({_where(req)}): {exc}")
        st.recover_memory()
        raise LuaBodyError("Lua memory limit reached in the response body") from None
    except st.lupa.LuaError as exc:
        log(f"[uwsgi-lua] Lua error in the response body ({_where(req)}): {exc}")
        raise LuaBodyError(str(exc).splitlines()[0] if str(exc) else "Lua error") from None
    chunk, bstate = res[0], res[1]
    if chunk:
        req.write(chunk)
    if bstate == B_ERROR:
        message = _text(res[2])
        if getattr(req, "websocket", None) is not None and "websocket message" in message:
            return B_END    # the client left the WebSocket session: its normal end
        st.errors += 1
        log(f"[uwsgi-lua] {message} ({_where(req)}); the response is truncated")
        if "not enough memory" in message:
            st.recover_memory()
        raise LuaBodyError(message.splitlines()[0])
    return bstate


def _stream(st, req, slot, memory_error):
    done = False
    try:
        while True:
            yield
            st.req = req       # the state is shared with the thread's other cores
            if next_slice(st, req, slot, memory_error) == B_END:
                done = True
                return
    finally:
        if not done:
            st.abandon(slot)   # failed, or closed early (client gone, worker stopping): drop the iterator
