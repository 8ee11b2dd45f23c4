"""The actions of uWSGI's router_rewrite, router_redirect, router_basicauth and router_static
plugins (built in here), with their semantics:

    rewrite / rewrite-last   new PATH_INFO (url-decoded) and QUERY_STRING; -last stops routing
    redirect[-302] / redirect-permanent / redirect-301   302 or 301 with Location, body "Moved"
    basicauth[-next]         REALM,USER:PASS or REALM,HTPASSWD_FILE; 401 unless the credentials
                             match (-next: go on to the next route instead of answering 401)
    static[-next]            serve the file at the translated path
    file / sendfile / fastfile [-next]   filename=...,status=...,content_type=...,mime=1,nocl=1,
                             no_headers=1: send a file as the response (-next: go on when the
                             file cannot be opened)
"""

from __future__ import annotations

import os
import stat as _stat
from email.utils import formatdate, parsedate_to_datetime
from urllib.parse import unquote_to_bytes

from uwsgid.routing import htpasswd
from uwsgid.routing.actions_core import reason_phrase
from uwsgid.routing.chains import BREAK, CONTINUE, NEXT, action
from uwsgid.routing.translate import Text, mime_type
from uwsgid.util.log import log


# ---- rewrite ------------------------------------------------------------------------------------
def _rewrite(last: bool):
    def factory(arg, chain):
        text = Text(arg)

        def run(state, req, groups):
            v = req.vars
            target = text.render(req, groups)
            path, q, qs = target.partition(b"?")
            old_qs = v.get(b"QUERY_STRING", b"")
            if q:
                if old_qs:
                    qs = qs + b"&" + old_qs
            else:
                qs = old_qs
            v[b"PATH_INFO"] = unquote_to_bytes(path)
            v[b"QUERY_STRING"] = qs
            return CONTINUE if last else NEXT
        return run
    return factory


action("rewrite", doc="set PATH_INFO (and QUERY_STRING after a '?', the old one appended) and go on "
                      "with the next route")(_rewrite(False))
action("rewrite-last", doc="rewrite, then stop routing and serve the request")(_rewrite(True))


# ---- redirect -----------------------------------------------------------------------------------
def _redirect(status: bytes, body: bytes):
    def factory(arg, chain):
        text = Text(arg)

        def run(state, req, groups):
            location = text.render(req, groups)
            if b"\r" in location or b"\n" in location:
                return BREAK
            state.answer(req, status, [(b"Location", location)], body)
            return BREAK
        return run
    return factory


action("redirect", "redirect-302", doc="answer 302 Found with Location: the translated URL")(
    _redirect(b"302 Found", b"Moved"))
action("redirect-permanent", "redirect-301", doc="answer 301 Moved Permanently with Location")(
    _redirect(b"301 Moved Permanently", b"Moved Permanently"))


# ---- basicauth ----------------------------------------------------------------------------------
def _basicauth(next_on_fail: bool):
    def factory(arg, chain):
        realm, comma, creds = arg.partition(b",")
        if not comma:
            raise ValueError(f"invalid route syntax: {arg.decode('latin-1')} (expected REALM,USER:PASS "
                             f"or REALM,HTPASSWD_FILE)")
        inline = b":" in creds
        if not inline and creds and not os.path.isfile(creds):
            raise ValueError(f"{creds.decode('latin-1')}: no such htpasswd file")
        challenge = [(b"WWW-Authenticate", b'Basic realm="' + realm + b'"')]

        def run(state, req, groups):
            v = req.vars
            if v.get(b"REMOTE_USER"):
                return NEXT         # already authenticated (by an earlier route)
            auth = v.get(b"HTTP_AUTHORIZATION", b"")
            if len(auth) > 7 and creds and auth.startswith(b"Basic "):
                decoded = htpasswd.b64(auth[6:])
                if decoded is not None:
                    user = None
                    if inline:
                        if decoded == creds:
                            user = creds.partition(b":")[0]
                    else:
                        user = htpasswd.check(creds, decoded)
                    if user:
                        v[b"REMOTE_USER"] = user
                        return NEXT
                    if next_on_fail:
                        return NEXT
            state.answer(req, b"401 Authorization Required", challenge, b"Unauthorized")
            return BREAK
        return run
    return factory


action("basicauth", doc="REALM,USER:PASS or REALM,HTPASSWD_FILE (crypt and {SHA} lines): "
                        "401 unless the request's Basic credentials match; sets REMOTE_USER")(_basicauth(False))
action("basicauth-next", doc="as basicauth, but wrong credentials go on to the next route "
                             "(several accounts: chain them, the last one plain basicauth)")(_basicauth(True))


# ---- files --------------------------------------------------------------------------------------
def _static(next_after: bool):
    def factory(arg, chain):
        text = Text(arg)

        def run(state, req, groups):
            path = text.render(req, groups)
            serve_file(state, req, path)
            return NEXT if next_after else BREAK
        return run
    return factory


action("static", doc="serve the file at the path (GET/HEAD; MIME type, Last-Modified, If-Modified-Since); "
                     "nothing is sent when it is missing or its real path is not under the path given "
                     "(symlink, ..) nor a --static-safe one")(_static(False))
action("static-next", doc="as static, then go on with the next route")(_static(True))


_static_safe: tuple = ()     # --static-safe directories (set by uwsgid.routing.setup)


def use_static_safe(dirs) -> None:
    global _static_safe
    _static_safe = tuple(os.fsencode(d) for d in dirs if d)


def _real_path(fd: int, path: bytes) -> bytes:
    try:
        return os.readlink(b"/proc/self/fd/%d" % fd)     # what was opened, symlinks resolved
    except OSError:
        return os.path.realpath(path)


def serve_file(state, req, path: bytes) -> bool:
    """uwsgi_file_serve for a named file (core/static.c): False (nothing sent) when it is not a
    readable file, when the method is not GET or HEAD, or when its real path does not start with
    the path as given (a symlink, `..`, a relative path) nor with a --static-safe prefix: uWSGI's
    "security error", logged, the same string test."""
    if req.method not in (b"GET", b"HEAD"):
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not _stat.S_ISREG(st.st_mode):
            return False
        real = _real_path(fd, path)
        if not real.startswith(path) and not any(real.startswith(d) for d in _static_safe):
            log(f"[uwsgi-fileserve] security error: {real.decode('latin-1')} is not under "
                f"{path.decode('latin-1')} or a safe path")
            return False
        mtime = int(st.st_mtime)
        ims = req.vars.get(b"HTTP_IF_MODIFIED_SINCE")
        if ims:
            try:
                if int(parsedate_to_datetime(ims.decode("latin-1")).timestamp()) >= mtime:
                    state.answer(req, b"304 Not Modified", [])
                    return True
            except (TypeError, ValueError):
                pass
        headers = [(b"Content-Length", b"%d" % st.st_size),
                   (b"Last-Modified", formatdate(mtime, usegmt=True).encode())]
        ctype = mime_type(path)
        if ctype:
            headers.insert(0, (b"Content-Type", ctype))
        state.answer(req, b"200 OK", headers)
        if req.method != b"HEAD":
            req.sendfile(fd, 0, st.st_size)
        return True
    finally:
        os.close(fd)


def _file_conf(arg: bytes) -> dict:
    conf = {}
    for item in arg.split(b","):
        if not item:
            continue
        key, eq, value = item.partition(b"=")
        key = key.strip().decode("latin-1")
        if key not in ("filename", "status", "content_type", "nocl", "no_cl", "no_content_length", "mime",
                       "no_headers"):
            raise ValueError(f"invalid file route syntax: unknown key {key!r}")
        conf[key] = value
    if not conf.get("filename"):
        raise ValueError("you have to specify a filename (filename=PATH)")
    return conf


def _file(mode: str, next_on_missing: bool):
    def factory(arg, chain):
        conf = _file_conf(arg)
        filename = Text(conf["filename"])
        status = Text(conf.get("status") or b"200 OK")
        ctype = conf.get("content_type") or b"text/html"
        nocl = any(conf.get(k) for k in ("nocl", "no_cl", "no_content_length"))
        use_mime = bool(conf.get("mime"))
        no_headers = bool(conf.get("no_headers"))

        def run(state, req, groups):
            path = filename.render(req, groups)
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                return NEXT if next_on_missing else BREAK
            try:
                size = os.fstat(fd).st_size
                st_line = status.render(req, groups).strip()
                if len(st_line) == 3 and st_line.isdigit():
                    st_line += b" " + reason_phrase(st_line)
                if no_headers:
                    state.answer(req, st_line, [])
                    state.noheaders = True
                else:
                    headers = [(b"Content-Type", (mime_type(path) if use_mime else None) or ctype)]
                    if mode != "file" or not nocl:
                        headers.append((b"Content-Length", b"%d" % size))
                    state.answer(req, st_line, headers)
                if mode == "file":
                    remains = size
                    while remains > 0:
                        chunk = os.read(fd, min(32768, remains))
                        if not chunk:
                            break
                        req.write(chunk)
                        remains -= len(chunk)
                elif req.method != b"HEAD":
                    req.sendfile(fd, 0, size)
            finally:
                os.close(fd)
            return BREAK
        return run
    return factory


_FILE_DOC = ("filename=PATH[,status=200 OK][,content_type=text/html][,mime=1][,nocl=1][,no_headers=1]: "
             "answer with the file")
action("file", doc=_FILE_DOC + " (read and written)")(_file("file", False))
action("file-next", doc="as file, but go on with the next route when the file cannot be opened")(_file("file", True))
action("sendfile", doc=_FILE_DOC + " (sendfile(2))")(_file("sendfile", False))
action("sendfile-next", doc="as sendfile, going on when the file cannot be opened")(_file("sendfile", True))
action("fastfile", doc=_FILE_DOC + " (sendfile(2), as sendfile: no offload from a route here)")(
    _file("fastfile", False))
action("fastfile-next", doc="as fastfile, going on when the file cannot be opened")(_file("fastfile", True))

