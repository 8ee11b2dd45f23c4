"""uWSGI's log encoders (`--log-encoder NAME[:LOGGER] [ARGS]`, `--log-req-encoder`): each turns
a log message into what a logger writes, in the order given; with :LOGGER only for the logger
of that name.

    prefix TEXT / suffix TEXT / nl        TEXT before / after, a newline after
    format TEMPLATE / json TEMPLATE       ${msg} (without its newline), ${msgnl}, ${unix},
                                          ${micros}, ${millis}, ${strftime:FMT} (json: escaped)
    gzip / compress                       the message gzipped / zlib-compressed
"""

from __future__ import annotations

import time

from uwsgid.util.logsinks import LogSinkError

ENCODERS = ("prefix", "suffix", "nl", "format", "json", "gzip", "compress")


def _template(args: str) -> list:
    """'a ${msg} b' -> ['a ', ('msg',), ' b'] (uWSGI's uwsgi_log_encoder_parse_vars)."""
    import re
    parts: list = []
    pos = 0
    for m in re.finditer(r"\$\{([^}]*)\}", args):
        if m.start() > pos:
            parts.append(args[pos:m.start()])
        parts.append((m.group(1),))
        pos = m.end()
    if pos < len(args):
        parts.append(args[pos:])
    return parts


class Encoder:
    """One --log-encoder: NAME[:ID] [ARGS]; with :ID it applies to the logger named ID only."""

    def __init__(self, value: str, option: str = "--log-encoder"):
        head, _, self.args = value.partition(" ")
        name, colon, use_for = head.partition(":")
        if name not in ENCODERS:
            raise LogSinkError(f"{option} {value}: log encoder {name!r} not found "
                               f"(encoders here: {', '.join(ENCODERS)})")
        self.name = name
        self.use_for = use_for if colon else None
        self.parts = _template(self.args) if name in ("format", "json") else None
        if name == "json":
            import json
            self._dumps = json.dumps

    def applies_to(self, sink) -> bool:
        if self.use_for is None:
            return True
        return sink is not None and sink.id == self.use_for

    def __call__(self, msg: bytes) -> bytes:
        name = self.name
        if name == "prefix":
            return self.args.encode() + msg
        if name == "suffix":
            return msg + self.args.encode()
        if name == "nl":
            return msg + b"\n"
        if name in ("gzip", "compress"):
            import zlib
            if name == "compress":
                return zlib.compress(msg)
            co = zlib.compressobj(wbits=31)
            return co.compress(msg) + co.flush()
        out = []
        for p in self.parts:
            if isinstance(p, str):
                out.append(p.encode())
            else:
                out.append(self._var(p[0], msg))
        return b"".join(out)

    def _var(self, var: str, msg: bytes) -> bytes:
        if var in ("msg", "msgnl"):
            value = msg[:-1] if var == "msg" and msg.endswith(b"\n") else msg
            if self.name == "json":
                return self._dumps(value.decode("utf-8", "backslashreplace"))[1:-1].encode()
            return value
        if var == "unix":
            return b"%d" % int(time.time())
        if var == "micros":
            return b"%d" % (time.time_ns() // 1000)
        if var == "millis":
            return b"%d" % (time.time_ns() // 1_000_000)
        if var.startswith("strftime:"):
            text = time.strftime(var[9:])
            if self.name == "json":
                text = self._dumps(text)[1:-1]
            return text.encode()
        return b""
