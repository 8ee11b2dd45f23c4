"""Per-file rules from the options: the Expires header and the precompressed variant.

Expires (uWSGI core/static.c uwsgi_add_expires*): SECS after now, or after the file's mtime for
the -mtime forms, for the first rule matching, tried in uWSGI's order:
  --static-expires REGEX SECS             the file's real path
  --static-expires-path-info REGEX SECS   PATH_INFO
  --static-expires-uri REGEX SECS         REQUEST_URI
  --static-expires-type MIME=SECS         the Content-Type (exactly)
(each with a -mtime twin, tried after it). uWSGI writes "REGEX SECS" (one space); "REGEX=SECS"
is read too when there is no space. Where several groups match uWSGI sends several Expires
headers; we send the first.

Variants (uWSGI core/static.c uwsgi_static_want_gzip): when the client accepts it and a rule
covers the file (--static-gzip-all, --static-gzip-dir/--static-gzip-prefix a path prefix,
--static-gzip-ext/--static-gzip-suffix a name suffix, --static-gzip a regex on the real path),
FILE.br (Accept-Encoding: br) or else FILE.gz (gzip) is served in its place with
Content-Encoding, when it exists. The Content-Type stays the plain file's. Ours besides:
`Vary: Accept-Encoding` on every response a rule covers (caches must not hand the gzip
variant to a client that did not ask for it), and "gzip;q=0" counts as a refusal.
"""

from __future__ import annotations

import os
import time

from uwsgid.config.options import Option, declare
from uwsgid.static.conditional import http_date
from uwsgid.static.mapping import StaticConfigError

# (option, what its REGEX is matched against: 0 the real path, 1 PATH_INFO, 2 REQUEST_URI, mtime based)
_REGEX_OPTIONS = (
    ("static-expires", 0, False), ("static-expires-mtime", 0, True),
    ("static-expires-path-info", 1, False), ("static-expires-path-info-mtime", 1, True),
    ("static-expires-uri", 2, False), ("static-expires-uri-mtime", 2, True),
)
_FIELDS = ("the static file's real path", "PATH_INFO", "REQUEST_URI")


def _expires_option(name: str, field: int, by_mtime: bool) -> Option:
    base = "the file's mtime" if by_mtime else "now"
    return Option(name, kind="str", multi=True, group="static", metavar="REGEX SECS",
                  help=f"Expires: {base} + SECS on static files when REGEX matches {_FIELDS[field]} "
                       f"(uWSGI's syntax, one space; REGEX=SECS is read too)")


declare(
    *[_expires_option(*o) for o in _REGEX_OPTIONS],
    Option("static-expires-type", kind="str", multi=True, group="static", metavar="MIME=SECS",
           help="Expires: now + SECS on static files whose Content-Type is MIME"),
    Option("static-expires-type-mtime", kind="str", multi=True, group="static", metavar="MIME=SECS",
           help="Expires: the file's mtime + SECS on static files whose Content-Type is MIME"),
    Option("static-gzip-all", kind="flag", group="static",
           help="serve FILE.gz (Content-Encoding: gzip) for any static FILE when the client accepts gzip and "
                "FILE.gz exists (FILE.br first for clients accepting br)"),
    Option("static-gzip-dir", kind="str", multi=True, group="static", aliases=("static-gzip-prefix",),
           metavar="DIR", help="like --static-gzip-all, for the files under DIR (a path prefix)"),
    Option("static-gzip-ext", kind="str", multi=True, group="static", aliases=("static-gzip-suffix",),
           metavar="EXT", help="like --static-gzip-all, for the files whose name ends with EXT"),
    Option("static-gzip", kind="str", multi=True, group="static", metavar="REGEX",
           help="like --static-gzip-all, for the files whose real path matches REGEX"),
)


def _secs(option: str, value: str, text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise StaticConfigError(f"--{option} {value}: {text.strip()!r} is not a number of seconds") from None


def _regex(option: str, value: str, pattern: str):
    import re  # only for these options: the server's start does without it
    try:
        return re.compile(os.fsencode(pattern))
    except re.error as e:
        raise StaticConfigError(f"--{option} {value}: invalid regular expression ({e})") from None


def _regex_rule(option: str, value: str):
    parts = value.rsplit(None, 1)
    if len(parts) != 2:
        pattern, eq, secs = value.rpartition("=")
        if not eq or not pattern or not secs.strip().lstrip("-").isdigit():
            raise StaticConfigError(f"--{option} {value}: syntax is REGEX SECS")
        parts = [pattern, secs]
    return _regex(option, value, parts[0]), _secs(option, value, parts[1])


class Rules:
    def __init__(self, opts):
        get = opts.get
        # (field, rules, mtime based); field: 0 real path, 1 PATH_INFO, 2 REQUEST_URI
        self.regex_rules = []
        for option, field, by_mtime in _REGEX_OPTIONS:
            rules = [_regex_rule(option, v) for v in get(option, []) or []]
            if rules:
                self.regex_rules.append((field, rules, by_mtime))
        self.type_rules = []
        for mtime, option in ((False, "static-expires-type"), (True, "static-expires-type-mtime")):
            for v in get(option, []) or []:
                mime, eq, secs = v.partition("=")
                if not eq or not mime:
                    raise StaticConfigError(f"--{option} {v}: syntax is MIME=SECS")
                self.type_rules.append((os.fsencode(mime.strip()), _secs(option, v, secs), mtime))
        self.expires_any = bool(self.regex_rules or self.type_rules)
        self.gzip_all = bool(get("static-gzip-all", False))
        dirs = []
        for d in get("static-gzip-dir", []) or []:
            b = os.fsencode(d)
            dirs.append(b)
            r = os.path.realpath(b)
            if r != b:
                dirs.append(r)
        self.gzip_dirs = tuple(dirs)
        self.gzip_exts = tuple(os.fsencode(e) for e in get("static-gzip-ext", []) or [] if e)
        self.gzip_regex = [_regex("static-gzip", v, v) for v in get("static-gzip", []) or []]
        self.gzip_any = bool(self.gzip_all or self.gzip_dirs or self.gzip_exts or self.gzip_regex)

    # ---- Expires ----------------------------------------------------------------------------
    def expires(self, real: bytes, v: dict, ctype, mtime: int):
        """The Expires value for this response, or None."""
        for field, rules, by_mtime in self.regex_rules:
            subject = real if field == 0 else v.get(b"PATH_INFO" if field == 1 else b"REQUEST_URI", b"")
            for rx, secs in rules:
                if rx.search(subject) is not None:
                    return http_date((mtime if by_mtime else int(time.time())) + secs)
        if ctype is not None:
            for mime, secs, by_mtime in self.type_rules:
                if mime == ctype:
                    return http_date((mtime if by_mtime else int(time.time())) + secs)
        return None

    # ---- precompressed variants -------------------------------------------------------------
    def covers(self, real: bytes) -> bool:
        """A gzip rule covers this file (whether or not this client accepts gzip)."""
        if self.gzip_all:
            return True
        if self.gzip_dirs and real.startswith(self.gzip_dirs):
            return True
        if self.gzip_exts and real.endswith(self.gzip_exts):
            return True
        return any(rx.search(real) is not None for rx in self.gzip_regex)


def accepted_encodings(header: bytes) -> list:
    """The (suffix, Content-Encoding) variants to try for an Accept-Encoding value, best first:
    br, then gzip (uWSGI's order)."""
    out = []
    h = header.lower()
    if b"br" not in h and b"gzip" not in h:
        return out
    ok = set()
    for item in h.split(b","):
        name, _, params = item.strip().partition(b";")
        name = name.strip()
        q = 1.0
        for p in params.split(b";"):
            k, eq, val = p.strip().partition(b"=")
            if eq and k.strip() == b"q":
                try:
                    q = float(val)
                except ValueError:
                    q = 0.0
        if q > 0:
            ok.add(name)
    if b"br" in ok:
        out.append((b".br", b"br"))
    if b"gzip" in ok or b"x-gzip" in ok:
        out.append((b".gz", b"gzip"))
    return out
