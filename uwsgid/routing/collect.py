"""--collect-header and --pull-header: a response header copied into a request var (pull: and
removed from the response), as uWSGI's core/writer.c does in uwsgi_response_add_header_do.

    --collect-header "NAME VAR"   (alias --response-header-collect) the app's response header
                                  NAME (any case) becomes request var VAR; it still goes out
    --pull-header "NAME VAR"      the same, and the header is removed from the response

The var is set when the head is about to go out, before the error and response chains run, so
that `${VAR}` in those chains and in the final chain (and `%(var.VAR)` in --log-format) see it.
A header given twice keeps its first value (uWSGI appends the var twice; lookups find the first).
A pull wins over a collect of the same header (uWSGI checks the pulls first).
"""

from __future__ import annotations

from uwsgid.config.options import Option, declare

declare(
    Option("collect-header", kind="str", multi=True, group="routing", metavar="HEADER VAR",
           aliases=("response-header-collect",),
           help="store the specified response header in a request var (syntax: header var)"),
    Option("pull-header", kind="str", multi=True, group="routing", metavar="HEADER VAR",
           help="store the specified response header in a request var and remove it from the response "
                "(syntax: header var)"),
)


class CollectError(ValueError):
    """A bad --collect-header / --pull-header value: its message is the one start-up line."""


def _parse(option: str, values) -> tuple:
    out = []
    for value in values or ():
        text = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
        name, space, var = text.strip().partition(b" ")
        var = var.strip()
        if not space or not name or not var or b":" in name:
            kind = option.split("-")[0]
            raise CollectError(f"--{option} {value!r}: invalid {kind} header syntax, must be <header> <var>")
        out.append((name.lower(), var))
    return tuple(out)


class Collector:
    """The compiled --collect-header / --pull-header lists; apply(req) before the head goes out."""

    __slots__ = ("collect", "pull", "names")

    def __init__(self, collect: tuple, pull: tuple):
        self.collect = collect
        self.pull = pull
        self.names = frozenset(n for n, _ in collect) | frozenset(n for n, _ in pull)

    def __bool__(self) -> bool:
        return bool(self.names)

    def apply(self, req) -> None:
        headers = req.headers
        names = self.names
        if not any(h[0].lower() in names for h in headers):
            return
        v = req.vars
        seen = set()
        pulled = False
        for name, value in headers:
            low = name.lower()
            if low not in names:
                continue
            for hname, var in self.pull:
                if hname == low:
                    pulled = True
                    if var not in seen:
                        seen.add(var)
                        v[var] = value
                    break
            else:
                for hname, var in self.collect:
                    if hname == low and var not in seen:
                        seen.add(var)
                        v[var] = value
        if pulled:
            gone = frozenset(n for n, _ in self.pull)
            req.headers = [h for h in headers if h[0].lower() not in gone]
            cl = None
            for name, value in req.headers:
                if len(name) == 14 and name.lower() == b"content-length":
                    cl = int(value) if value.strip().isdigit() else None
            req._app_cl = cl


def from_options(opts) -> Collector | None:
    """None when neither option is given. Raises CollectError (one line) on a bad value."""
    c = Collector(_parse("collect-header", opts.get("collect-header", None)),
                  _parse("pull-header", opts.get("pull-header", None)))
    return c if c else None
