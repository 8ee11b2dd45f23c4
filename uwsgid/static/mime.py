"""The MIME table of static files: file extension -> Content-Type, read from mime.types files.

uWSGI's behaviour (core/utils.c uwsgi_build_mime_dict, core/static.c uwsgi_get_mime_type): the
files given with --mime-file (several, in order), else /etc/mime.types; a line is a type then
its extensions, blank-separated; lines not starting with a letter or digit are skipped; the
first file (and line) naming an extension wins; the extension is what follows the file name's
last dot. A file without a known extension gets no Content-Type. uWSGI logs
"building mime-types dictionary from file F...N entry found" per file, or "!!! no F file
found !!!".

Ours besides: an extension not found as written is looked up again in lower case (FOO.PNG),
and when no mime.types file could be read at all a small built-in table of the web's common
types is used (said in the log), so that a slim container without /etc/mime.types still sends
text/css and application/javascript.
"""

from __future__ import annotations

from uwsgid.config.options import Option, declare
from uwsgid.util.log import log

declare(
    Option("mime-file", kind="str", multi=True, group="static", aliases=("mimefile",), metavar="FILE",
           help="read the static files' MIME types (extension -> Content-Type) from FILE, a mime.types "
                "file (several allowed, the first naming an extension wins; default /etc/mime.types)"),
)

DEFAULT_FILE = "/etc/mime.types"

# Used only when no mime.types file could be read (see the module doc).
BUILTIN = {
    b"html": b"text/html", b"htm": b"text/html", b"css": b"text/css", b"js": b"text/javascript",
    b"mjs": b"text/javascript", b"json": b"application/json", b"map": b"application/json",
    b"txt": b"text/plain", b"xml": b"application/xml", b"csv": b"text/csv", b"md": b"text/markdown",
    b"png": b"image/png", b"jpg": b"image/jpeg", b"jpeg": b"image/jpeg", b"gif": b"image/gif",
    b"svg": b"image/svg+xml", b"ico": b"image/vnd.microsoft.icon", b"webp": b"image/webp",
    b"avif": b"image/avif", b"woff": b"font/woff", b"woff2": b"font/woff2", b"ttf": b"font/ttf",
    b"otf": b"font/otf", b"eot": b"application/vnd.ms-fontobject", b"pdf": b"application/pdf",
    b"zip": b"application/zip", b"gz": b"application/gzip", b"tar": b"application/x-tar",
    b"wasm": b"application/wasm", b"mp4": b"video/mp4", b"webm": b"video/webm", b"mp3": b"audio/mpeg",
    b"ogg": b"audio/ogg", b"wav": b"audio/wav",
}


def parse(data: bytes, table: dict) -> int:
    """Add a mime.types file's entries to `table` (ext -> type, existing entries kept); returns
    how many extensions the file lists."""
    n = 0
    for line in data.splitlines():
        if not line[:1].isalnum():
            continue
        fields = line.split()
        mtype = fields[0]
        for ext in fields[1:]:
            n += 1
            if ext not in table:
                table[ext] = mtype
    return n


class MimeTable:
    """ext (bytes, no dot) -> Content-Type (bytes)."""

    __slots__ = ("types",)

    def __init__(self, types: dict):
        self.types = types

    @classmethod
    def load(cls, files) -> MimeTable:
        """From the --mime-file list (empty: /etc/mime.types), logging as uWSGI does."""
        table: dict = {}
        read = False
        for path in files or [DEFAULT_FILE]:
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                log(f"!!! no {path} file found !!!")
                continue
            read = True
            log(f"building mime-types dictionary from file {path}...{parse(data, table)} entry found")
        if not read:
            log(f"[uwsgi-static] no mime.types file could be read: using {len(BUILTIN)} built-in types")
            table = dict(BUILTIN)
        return cls(table)

    def lookup(self, name: bytes) -> bytes | None:
        """The Content-Type of a file name (or path), None when its extension is unknown."""
        dot = name.rfind(b".")
        if dot < 0 or name.find(b"/", dot) >= 0:
            return None
        ext = name[dot + 1:]
        types = self.types
        t = types.get(ext)
        if t is None and not ext.islower():
            t = types.get(ext.lower())
        return t
