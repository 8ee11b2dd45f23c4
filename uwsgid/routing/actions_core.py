"""The actions of core/routing.c (uwsgi_register_embedded_routers), with uWSGI's semantics.

Each factory gets the text after `ACTION:` (bytes) and the chain, and returns the function run
when the route matches: fn(state, req, groups) -> NEXT / CONTINUE / BREAK. Request vars set by
an action are seen by the routes after it, by the static files and by the app (environ / WSAPI
env), as uWSGI's uwsgi_req_append makes them.
"""

from __future__ import annotations

import os
from http import HTTPStatus

from uwsgid.routing.chains import BREAK, CONTINUE, NEXT, REFUSED, action
from uwsgid.routing.translate import Text, num
from uwsgid.util.log import log

# The actions real uWSGI has that this server refuses at start-up, with why (never ignored).
REFUSED.update({
    "harakiri": "a per-request harakiri is not implemented here; use --harakiri for every request",
    "donotoffload": "only static files are offloaded here (--offload-threads); a route cannot "
                    "turn that off per request",
    "uwsgi": "proxying from a route is not implemented here; proxy with nginx/haproxy in front",
    "proxyuwsgi": "proxying from a route is not implemented here; proxy with nginx/haproxy in front",
    "http": "proxying from a route is not implemented here; proxy with nginx/haproxy in front",
    "proxyhttp": "proxying from a route is not implemented here; proxy with nginx/haproxy in front",
    "httpdumb": "proxying from a route is not implemented here; proxy with nginx/haproxy in front",
    "httpconnect": "proxying from a route is not implemented here; proxy with nginx/haproxy in front",
    "proxyhttpconnect": "proxying from a route is not implemented here; proxy with nginx/haproxy in front",
})

# http.client's table without http.client (which imports email and ssl)
responses = {s.value: s.phrase for s in HTTPStatus}


def _plain(fn):
    """An action whose argument is translated and handed to fn(state, req, value) -> code."""
    def factory(arg: bytes, chain):
        text = Text(arg)

        def run(state, req, groups):
            return fn(state, req, text.render(req, groups))
        return run
    return factory


def _key_value(arg: bytes, what: str):
    key, eq, value = arg.partition(b"=")
    if not eq or not key:
        raise ValueError(f"invalid {what} syntax, must be KEY=VALUE")
    return key, Text(value)


# ---- flow ---------------------------------------------------------------------------------------
@action("continue", "last", doc="stop routing: the request goes on to the static files and the app")
def _continue(arg, chain):
    return lambda state, req, groups: CONTINUE


@action("break", doc="stop routing and end the request; with a status (break:403 Forbidden) "
                     "that status is sent, Content-Type text/plain, no body")
def _break(arg, chain):
    status = arg.strip()
    if len(status) < 3:
        return lambda state, req, groups: BREAK

    def run(state, req, groups):
        req.keepalive = False       # uWSGI adds Connection: close
        state.answer(req, status if len(status) > 3 else status + b" " + reason_phrase(status), [(b"Content-Type", b"text/plain")])
        return BREAK
    return run


def reason_phrase(status: bytes) -> bytes:
    return responses.get(int(status[:3]), "Unknown").encode()


@action("return", "break-with-status", doc="answer STATUS with its reason phrase as a text/plain body")
def _return(arg, chain):
    code = arg.strip()[:3]

    def run(state, req, groups):
        if len(code) < 3 or not code.isdigit() or int(code) not in responses:
            return BREAK
        msg = responses[int(code)].encode()
        state.answer(req, code + b" " + msg, [(b"Content-Type", b"text/plain"),
                                             (b"Content-Length", b"%d" % len(msg))], msg)
        return BREAK
    return run


@action("goto", doc="jump forward to label NAME (--route-label) in the same chain")
def _goto(arg, chain):
    text = Text(arg)

    def run(state, req, groups):
        state.jump = chain.find_label(text.render(req, groups))
        return NEXT
    return run


# ---- logging --------------------------------------------------------------------------------------
@action("log", doc="write the translated text to the server log")
def _log(arg, chain):
    return _plain(lambda state, req, value: (log(value.decode("utf-8", "replace")), NEXT)[1])(arg, chain)


@action("alarm", doc="raise the alarm NAME (created with --alarm) with MESSAGE: alarm:NAME MESSAGE "
                     "(both translated); the request goes on")
def _alarm(arg, chain):
    from uwsgid.services import alarm
    name, space, msg = arg.partition(b" ")
    if not space or not name:
        raise ValueError("invalid alarm syntax, must be alarm:NAME MESSAGE")
    name_t, msg_t = Text(name), Text(msg)
    unknown = set()

    def run(state, req, groups):
        target = name_t.render(req, groups).decode("utf-8", "replace")
        if not alarm.trigger(target, msg_t.render(req, groups)) and target not in alarm.names() \
                and target not in unknown:
            unknown.add(target)         # uWSGI says nothing: once here, then as uWSGI
            log(f"[uwsgi-route] alarm:{target}: no alarm named {target!r} (--alarm \"{target} PLUGIN:ARGS\")")
        return NEXT
    return run


@action("donotlog", doc="no request log line for this request")
def _donotlog(arg, chain):
    def run(state, req, groups):
        state.donotlog = True
        return NEXT
    return run


@action("logvar", doc="KEY=VALUE: set %(KEY) for --log-format")
def _logvar(arg, chain):
    key, value = _key_value(arg, "logvar")
    name = key.decode("latin-1")

    def run(state, req, groups):
        req.logvars[name] = value.render(req, groups)
        return NEXT
    return run


# ---- request vars -----------------------------------------------------------------------------------
@action("addvar", doc="KEY=VALUE: set request var KEY (the app sees it in its environ)")
def _addvar(arg, chain):
    key, value = _key_value(arg, "addvar")

    def run(state, req, groups):
        req.vars[key] = value.render(req, groups)
        return NEXT
    return run


def _setvar(var: bytes, doc: str, names=()):
    def factory(arg, chain):
        text = Text(arg)

        def run(state, req, groups):
            req.vars[var] = text.render(req, groups)
            return NEXT
        return run
    action(*names, doc=doc)(factory)


_setvar(b"UWSGI_APPID", "set UWSGI_APPID (the app to serve, by mountpoint)", ("setapp",))
_setvar(b"UWSGI_HOME", "set UWSGI_HOME", ("sethome",))
_setvar(b"SCRIPT_NAME", "set SCRIPT_NAME", ("setscriptname",))
_setvar(b"REQUEST_URI", "set REQUEST_URI", ("seturi",))
_setvar(b"REMOTE_ADDR", "set REMOTE_ADDR", ("setremoteaddr",))
_setvar(b"PATH_INFO", "set PATH_INFO (not url-decoded: see rewrite)", ("setpathinfo",))
_setvar(b"DOCUMENT_ROOT", "set DOCUMENT_ROOT", ("setdocroot",))
_setvar(b"UWSGI_SCHEME", "set UWSGI_SCHEME (the app's url scheme)", ("setscheme",))


@action("setfile", doc="set UWSGI_HOME (what uWSGI 2.0's setfile does) and mark the request dynamic")
def _setfile(arg, chain):
    text = Text(arg)

    def run(state, req, groups):
        req.vars[b"UWSGI_HOME"] = text.render(req, groups)
        return NEXT
    return run


@action("setmethod", doc="set REQUEST_METHOD (HEAD then gets no body)")
def _setmethod(arg, chain):
    text = Text(arg)

    def run(state, req, groups):
        m = text.render(req, groups)
        req.vars[b"REQUEST_METHOD"] = m
        req.method = m
        return NEXT
    return run


@action("setuser", doc="set REMOTE_USER (up to the first colon)")
def _setuser(arg, chain):
    text = Text(arg)

    def run(state, req, groups):
        req.vars[b"REMOTE_USER"] = text.render(req, groups).partition(b":")[0]
        return NEXT
    return run


@action("fixpathinfo", doc="strip SCRIPT_NAME from the start of PATH_INFO")
def _fixpathinfo(arg, chain):
    def run(state, req, groups):
        v = req.vars
        sn = v.get(b"SCRIPT_NAME", b"")
        if sn:
            v[b"PATH_INFO"] = v.get(b"PATH_INFO", b"")[len(sn):]
        return NEXT
    return run


def _modifier(field: str, doc: str, name: str):
    def factory(arg, chain):
        value = int(num(arg))
        if not 0 <= value <= 255:
            raise ValueError(f"{arg.decode('latin-1')!r}: a modifier is 0..255")

        def run(state, req, groups):
            setattr(req, field, value)
            return NEXT
        return run
    action(name, doc=doc)(factory)


_modifier("modifier1", "serve the request with the plugin of modifier1 N (e.g. 6 Lua, 0 Python)", "setmodifier1")
_modifier("modifier2", "set the request's modifier2", "setmodifier2")


def _math(op: str, name: str):
    def factory(arg, chain):
        var, comma, amount = arg.partition(b",")
        amount_text = Text(amount) if comma else None

        def run(state, req, groups):
            base = req.vars.get(var)
            if base is None:
                return BREAK
            a = num(base)
            b = num(amount_text.render(req, groups)) if amount_text is not None else 1
            if op == "+":
                total = a + b
            elif op == "-":
                total = a - b
            elif op == "*":
                total = a * b
            else:
                total = int(a / b) if b else 0
            req.vars[var] = str(total).encode()
            return NEXT
        return run
    action(name, doc=f"VAR[,N]: VAR = VAR {op} N (N defaults to 1) as integers")(factory)


for _op in "+-*/":
    _math(_op, _op)


# ---- response headers ---------------------------------------------------------------------------------
@action("addheader", doc="add 'Name: value' to the response")
def _addheader(arg, chain):
    name, colon, value = arg.partition(b":")
    if b"$" not in arg and colon and name.strip() and b"\r" not in arg and b"\n" not in arg:
        item = (name.strip(), value.strip())     # a fixed header: checked and split once, here

        def run(state, req, groups):
            if state.add is None:
                state.add = [item]
            else:
                state.add.append(item)
            return NEXT
        return run
    return _plain(lambda state, req, value: (state.add_header(value), NEXT)[1])(arg, chain)


@action("delheader", "remheader", doc="remove the app's response headers NAME (any case)")
def _delheader(arg, chain):
    return _plain(lambda state, req, value: (state.remove_header(value), NEXT)[1])(arg, chain)


@action("clearheaders", "resetheaders", doc="drop the app's headers and answer with STATUS instead")
def _clearheaders(arg, chain):
    def set_clear(state, req, value):
        value = value.strip()
        if len(value) == 3 and value.isdigit():
            value += b" " + reason_phrase(value)
        state.clear = value
        return NEXT
    return _plain(set_clear)(arg, chain)


@action("disableheaders", doc="send the body without an HTTP head")
def _disableheaders(arg, chain):
    def run(state, req, groups):
        state.noheaders = True
        return NEXT
    return run


@action("fixcl", doc="send the whole body at once with a Content-Length (unless the app set one)")
def _fixcl(arg, chain):
    def run(state, req, groups):
        state.hold = True
        return NEXT
    return run


@action("forcecl", doc="send the whole body at once with its real Content-Length, replacing the app's")
def _forcecl(arg, chain):
    def run(state, req, groups):
        state.hold = True
        state.forcecl = True
        return NEXT
    return run


@action("flush", doc="stream the body as it is written (the default here): cancels an earlier "
                     "fixcl/forcecl/cachestore hold")
def _flush(arg, chain):
    def run(state, req, groups):
        state.hold = False
        state.forcecl = False
        state.stores = None
        return NEXT
    return run


# ---- body -----------------------------------------------------------------------------------------------
def _send(crnl: bool):
    def factory(arg, chain):
        text = Text(arg)

        def run(state, req, groups):
            data = text.render(req, groups)
            if crnl:
                data += b"\r\n"
            if not req.status:
                # no status prepared: uWSGI writes the bytes without a head
                req.start_response(b"200 OK", [])
                state.noheaders = True
            req.write(data)
            return NEXT
        return run
    return factory


action("send", doc="write the text to the client (raw when no status is prepared)")(_send(False))
action("send-crnl", doc="write the text and CRLF to the client")(_send(True))


# ---- process ------------------------------------------------------------------------------------------------
@action("chdir", doc="change the worker's current directory")
def _chdir(arg, chain):
    text = Text(arg)

    def run(state, req, groups):
        path = text.render(req, groups)
        try:
            os.chdir(path)
        except OSError as e:
            log(f"uwsgi_router_chdir_func()/chdir(): {e.strerror} [{path.decode('latin-1')}]")
            return BREAK
        return NEXT
    return run


@action("setprocname", doc="set the process title")
def _setprocname(arg, chain):
    from uwsgid.util.binary import set_proctitle
    text = Text(arg)

    def run(state, req, groups):
        set_proctitle(text.render(req, groups).decode("utf-8", "replace"))
        return NEXT
    return run


@action("signal", doc="raise uWSGI signal N (its handler runs where it was registered)")
def _signal(arg, chain):
    n = num(arg)
    if not 0 <= n <= 255:
        raise ValueError(f"{arg.decode('latin-1')!r}: a signal is 0..255")

    def run(state, req, groups):
        from uwsgid.services import api
        try:
            api.signal(n)
        except Exception as e:
            log(f"[uwsgi-route] signal {n}: {e}")
        return NEXT
    return run
